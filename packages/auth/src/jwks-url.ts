/**
 * Verification keys from the issuer's JWKS URL. The set is fetched at first use and
 * again once it is older than `cacheMaxAgeMs`: in the background, while the keys in
 * hand go on verifying, and they go on for as long as the URL cannot be fetched (an
 * outage of the identity provider stops no caller whose token is signed by a known
 * key, and no call waits for a fetch that times out). A token naming a key id the set
 * does not hold (a rotation) has it fetched at once, at most every `cooldownMs`.
 * After a failed fetch the next one waits a backoff (1 s, doubling, at most
 * `cooldownMs`); until the first fetch succeeds, calls meanwhile are answered
 * UNAVAILABLE at once.
 */
import type { FlattenedJWSInput, JWSHeaderParameters, KeyLike } from "jose";
import { AuthError, CANNOT_CHECK_NOW, messageOf, toError } from "./errors";
import { isUnknownKid, parseKeySet, type KeyResolver } from "./jwks-file";

/** Settings of a JwksUrl. */
export interface JwksUrlOptions {
  /** Least time between two fetches for unknown key ids; the longest backoff (default 30 s). */
  readonly cooldownMs?: number;
  /** Age of the key set past which it is fetched again (default 10 min). */
  readonly cacheMaxAgeMs?: number;
  /** Timeout of one fetch, its body included (default 5 s). */
  readonly timeoutMs?: number;
  /** The clock, in ms since the epoch (default Date.now). */
  readonly now?: () => number;
  /** Told of each failed fetch (the last good key set stays); default process.emitWarning. */
  readonly onFetchError?: (err: Error) => void;
}

/** The first backoff after a failed fetch, ms. */
const FIRST_BACKOFF_MS = 1_000;
/** A larger key set document is refused. */
const MAX_JWKS_BYTES = 1024 * 1024;

export class JwksUrl {
  private keySet: KeyResolver | undefined;
  /** When the key set in hand was fetched. */
  private fetchedAtMs = -Infinity;
  /** When the last fetch ended. */
  private triedAtMs = -Infinity;
  /** Failed fetches since the last one that succeeded. */
  private failures = 0;
  private lastError: Error | undefined;
  private inFlight: Promise<boolean> | undefined;
  private readonly cooldownMs: number;
  private readonly cacheMaxAgeMs: number;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private readonly onFetchError: (err: Error) => void;
  /** Key sets fetched. */
  fetches = 0;
  /** Fetches that failed. */
  fetchErrors = 0;

  constructor(
    readonly url: string,
    options: JwksUrlOptions = {},
  ) {
    this.cooldownMs = options.cooldownMs ?? 30_000;
    this.cacheMaxAgeMs = options.cacheMaxAgeMs ?? 600_000;
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.now = options.now ?? Date.now;
    this.onFetchError =
      options.onFetchError ?? ((err) => process.emitWarning(err.message, "JwksFetchError"));
  }

  /** A jose key resolver over the URL's key set. */
  readonly getKey = async (
    header: JWSHeaderParameters,
    token: FlattenedJWSInput,
  ): Promise<KeyLike> => {
    if (!this.keySet) await this.fetchIfDue(this.backoffMs());
    else if (this.since(this.fetchedAtMs) >= this.cacheMaxAgeMs)
      void this.fetchIfDue(this.backoffMs()); // in the background: the keys in hand serve now
    const keySet = this.keySet;
    if (!keySet) throw this.unavailable();
    try {
      return await keySet(header, token);
    } catch (err) {
      // an unknown kid may be a freshly rotated key; anyone can make one up, so the URL
      // is asked at most every cooldownMs for them
      if (!isUnknownKid(err)) throw err;
      const fetched = await this.fetchIfDue(this.cooldownMs);
      // it may be a key the URL has now: while the URL fails, not the caller's fault
      if (fetched === "failed" || (fetched === "not due" && this.failures > 0))
        throw this.unavailable();
      if (fetched === "not due") throw err;
      return await this.keySet!(header, token);
    }
  };

  /**
   * Fetches the key set unless the last fetch ended less than `gapMs` ago (a backoff
   * counts from a failure, not from the start of a fetch that hung until its timeout);
   * a fetch in flight is joined.
   */
  private fetchIfDue(gapMs: number): Promise<"fetched" | "failed" | "not due"> {
    if (!this.inFlight) {
      if (this.since(this.triedAtMs) < gapMs) return Promise.resolve("not due");
      this.inFlight = this.fetchKeySet().finally(() => {
        this.triedAtMs = this.now();
        this.inFlight = undefined;
      });
    }
    return this.inFlight.then((ok) => (ok ? "fetched" : "failed"));
  }

  private async fetchKeySet(): Promise<boolean> {
    try {
      const response = await fetch(this.url, {
        signal: AbortSignal.timeout(this.timeoutMs),
        // a redirect could lead off https
        redirect: "error",
        headers: { accept: "application/json" },
      });
      if (response.status !== 200) {
        await response.body?.cancel().catch(() => undefined);
        throw new Error(`HTTP status ${response.status}`);
      }
      this.keySet = parseKeySet(await bodyOf(response));
      this.fetchedAtMs = this.now();
      this.failures = 0;
      this.lastError = undefined;
      this.fetches++;
      return true;
    } catch (err) {
      this.failures++;
      this.fetchErrors++;
      this.lastError = new Error(
        `cannot fetch the JWKS from ${this.url}${this.keySet ? " (keeping the last good key set)" : ""}: ${messageOf(err)}`,
        { cause: toError(err) },
      );
      try {
        this.onFetchError(this.lastError);
      } catch {
        // the caller's own failure: the key set, and the calls waiting, go on
      }
      return false;
    }
  }

  /** How long after a failed fetch the next one waits: nothing once one succeeded. */
  private backoffMs(): number {
    if (this.failures === 0) return 0;
    return Math.min(FIRST_BACKOFF_MS * 2 ** Math.min(this.failures - 1, 30), this.cooldownMs);
  }

  /** Ms since `at`; a clock stepped back counts as long ago. */
  private since(at: number): number {
    const ms = this.now() - at;
    return ms < 0 ? Infinity : ms;
  }

  private unavailable(): AuthError {
    return new AuthError("UNAVAILABLE", CANNOT_CHECK_NOW, {
      cause: this.lastError ?? new Error(`no key set fetched from ${this.url} yet`),
    });
  }
}

/** The response's body as text, refused past MAX_JWKS_BYTES. */
async function bodyOf(response: Response): Promise<string> {
  const declared = Number(response.headers.get("content-length") ?? 0);
  if (declared > MAX_JWKS_BYTES)
    throw new Error(`the key set is larger than ${MAX_JWKS_BYTES} bytes`);
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (response.body)
    for await (const chunk of response.body) {
      size += chunk.byteLength;
      if (size > MAX_JWKS_BYTES)
        throw new Error(`the key set is larger than ${MAX_JWKS_BYTES} bytes`);
      chunks.push(chunk);
    }
  return Buffer.concat(chunks).toString("utf8");
}
