/**
 * Verification keys from a JWKS file on local disk, for deployments that mount the
 * issuer's public keys (a Kubernetes secret, a config map). The file is read once at
 * construction (a missing or bad file stops startup) and re-read when it changes:
 * its stat is checked at most every `checkIntervalMs`, and at once when a token
 * names a key the loaded set does not hold, so a rotated key verifies without a
 * restart. A file that becomes unreadable or invalid keeps the last good key set.
 */
import {
  createLocalJWKSet,
  type FlattenedJWSInput,
  type JSONWebKeySet,
  type JWSHeaderParameters,
  type KeyLike,
} from "jose";
import { WatchedFile, type WatchedFileOptions } from "./watched-file";

/** Settings of a JwksFile. */
export type JwksFileOptions = WatchedFileOptions;

/** A jose key resolver: the key a token's header names. */
export type KeyResolver = (
  header: JWSHeaderParameters,
  token: FlattenedJWSInput,
) => Promise<KeyLike>;

/** jose found no key of the set for the token's kid (and algorithm). */
export const isUnknownKid = (err: unknown): boolean =>
  (err as { code?: unknown } | undefined)?.code === "ERR_JWKS_NO_MATCHING_KEY";

/** How often a token with an unknown key id may make the file be looked at again, ms. */
const UNKNOWN_KID_RECHECK_MS = 1_000;

export class JwksFile {
  private readonly source: WatchedFile<KeyResolver>;
  /** When a token with an unknown key id last made the file be looked at. */
  private lastUnknownKidMs = -Infinity;
  private readonly now: () => number;

  /** Reads `file` now; throws AuthConfigError when it is missing or not a usable key set. */
  constructor(
    readonly file: string,
    options: JwksFileOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.source = new WatchedFile(file, "JWKS file", parseKeySet, options, "JwksFileReloadError");
  }

  /** Times a changed file was loaded. */
  get reloads(): number {
    return this.source.reloads;
  }

  /** Times a changed file could not be used. */
  get reloadErrors(): number {
    return this.source.reloadErrors;
  }

  /** A jose key resolver over the file's current key set. */
  readonly getKey = async (
    header: JWSHeaderParameters,
    token: FlattenedJWSInput,
  ): Promise<KeyLike> => {
    await this.source.refreshIfDue();
    try {
      return await this.source.current(header, token);
    } catch (err) {
      // An unknown kid may be a freshly rotated key: look at the file now, not at the next
      // interval; but at most once a second (anyone can send a token with a made-up kid)
      if (!isUnknownKid(err)) throw err;
      // (a clock stepped back ends the wait rather than stretch it)
      const since = this.now() - this.lastUnknownKidMs;
      if (since >= 0 && since < UNKNOWN_KID_RECHECK_MS) throw err;
      this.lastUnknownKidMs = this.now();
      if (!(await this.source.refresh())) throw err;
      return await this.source.current(header, token);
    }
  };

  /** Re-reads the file if its stat changed; true when a new key set was loaded. One check in flight. */
  refresh(): Promise<boolean> {
    return this.source.refresh();
  }
}

/** A key resolver over a JWKS document; throws when it is not JSON or holds no keys. */
export function parseKeySet(text: string): KeyResolver {
  const jwks = JSON.parse(text) as JSONWebKeySet;
  if (!Array.isArray(jwks?.keys) || jwks.keys.length === 0) {
    throw new Error('a JWKS must be a JSON object with a non-empty "keys" array');
  }
  return createLocalJWKSet(jwks);
}
