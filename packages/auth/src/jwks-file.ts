/**
 * Verification keys from a JWKS file on local disk, for deployments that mount the
 * issuer's public keys (a Kubernetes secret, a config map). The file is read once at
 * construction (a missing or bad file stops startup) and re-read when it changes:
 * its stat is checked at most every `checkIntervalMs`, and at once when a token
 * names a key the loaded set does not hold, so a rotated key verifies without a
 * restart. A file that becomes unreadable or invalid keeps the last good key set.
 */
import * as fs from "node:fs";
import {
  createLocalJWKSet,
  type FlattenedJWSInput,
  type JSONWebKeySet,
  type JWSHeaderParameters,
  type KeyLike,
} from "jose";
import { AuthConfigError, messageOf, toError } from "./errors";

/** Settings of a JwksFile. */
export interface JwksFileOptions {
  /** Least time between two checks of the file's stat during normal traffic (default 10 s). */
  readonly checkIntervalMs?: number;
  /** The clock, in ms since the epoch (tests pass a fake one). */
  readonly now?: () => number;
  /** Told when a changed file cannot be used (the last good key set stays); default process.emitWarning. */
  readonly onReloadError?: (err: Error) => void;
}

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
  private keySet: KeyResolver;
  private stamp: string;
  /** The file's stat when it last could not be used: not read (nor reported) again until it changes. */
  private badStamp: string | undefined;
  private lastCheckMs: number;
  /** When a token with an unknown key id last made the file be looked at. */
  private lastUnknownKidMs = -Infinity;
  private inFlight: Promise<boolean> | undefined;
  private readonly checkIntervalMs: number;
  private readonly now: () => number;
  private readonly onReloadError: (err: Error) => void;
  /** Times a changed file was loaded. */
  reloads = 0;
  /** Times a changed file could not be used. */
  reloadErrors = 0;

  /** Reads `file` now; throws AuthConfigError when it is missing or not a usable key set. */
  constructor(
    readonly file: string,
    options: JwksFileOptions = {},
  ) {
    this.checkIntervalMs = options.checkIntervalMs ?? 10_000;
    this.now = options.now ?? Date.now;
    this.onReloadError =
      options.onReloadError ?? ((err) => process.emitWarning(err.message, "JwksFileReloadError"));
    try {
      const stat = fs.statSync(file, { bigint: true });
      this.keySet = parseKeySet(fs.readFileSync(file, "utf8"));
      this.stamp = stampOf(stat);
    } catch (err) {
      throw new AuthConfigError(`cannot use JWKS file ${file}: ${messageOf(err)}`, { cause: err });
    }
    this.lastCheckMs = this.now();
  }

  /** A jose key resolver over the file's current key set. */
  readonly getKey = async (
    header: JWSHeaderParameters,
    token: FlattenedJWSInput,
  ): Promise<KeyLike> => {
    if (this.now() - this.lastCheckMs >= this.checkIntervalMs) await this.refresh();
    try {
      return await this.keySet(header, token);
    } catch (err) {
      // An unknown kid may be a freshly rotated key: look at the file now, not at the next
      // interval; but at most once a second (anyone can send a token with a made-up kid)
      if (!isUnknownKid(err)) throw err;
      // (a clock stepped back ends the wait rather than stretch it)
      const since = this.now() - this.lastUnknownKidMs;
      if (since >= 0 && since < UNKNOWN_KID_RECHECK_MS) throw err;
      this.lastUnknownKidMs = this.now();
      if (!(await this.refresh())) throw err;
      return await this.keySet(header, token);
    }
  };

  /** Re-reads the file if its stat changed; true when a new key set was loaded. One check in flight. */
  refresh(): Promise<boolean> {
    this.inFlight ??= this.reloadIfChanged().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private async reloadIfChanged(): Promise<boolean> {
    this.lastCheckMs = this.now();
    let stamp: string | undefined;
    try {
      const stat = await fs.promises.stat(this.file, { bigint: true });
      stamp = stampOf(stat);
      if (stamp === this.stamp || stamp === this.badStamp) return false;
      const keySet = parseKeySet(await fs.promises.readFile(this.file, "utf8"));
      this.keySet = keySet;
      this.stamp = stamp;
      this.badStamp = undefined; // a file that goes bad again is reported again
      this.reloads++;
      return true;
    } catch (err) {
      // the same unusable file (or the same missing one) is reported once
      const bad = stamp ?? `unreadable: ${messageOf(err)}`;
      if (bad === this.badStamp) return false;
      this.badStamp = bad;
      this.reloadErrors++;
      this.onReloadError(
        new Error(
          `JWKS file ${this.file} changed but cannot be used (keeping the last good key set): ${messageOf(err)}`,
          { cause: toError(err) },
        ),
      );
      return false;
    }
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

/** Identifies one version of the file: a rewrite in place or a rename over it both change it. */
function stampOf(stat: fs.BigIntStats): string {
  return `${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`;
}
