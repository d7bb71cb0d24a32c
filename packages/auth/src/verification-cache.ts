/**
 * Remembers successful token verifications for a short while, so a caller's every
 * RPC does not pay for a signature check. Keys are SHA-256 digests of the token (the
 * cache never holds a token); an entry lives until the earlier of the token's own
 * expiry and `ttlMs`, and the least recently used entry is dropped when full.
 */
import * as crypto from "node:crypto";
import type { Identity } from "./identity";

/** Settings of a VerificationCache. */
export interface VerificationCacheOptions {
  /** Longest time an entry is trusted without verifying again (default 60 s; 0 disables). */
  readonly ttlMs?: number;
  /** Most entries held; the least recently used is dropped beyond it (default 10,000). */
  readonly maxEntries?: number;
  /** The clock, in ms since the epoch (tests pass a fake one). */
  readonly now?: () => number;
}

interface Entry {
  readonly identity: Identity;
  readonly expiresAtMs: number;
}

export class VerificationCache {
  private readonly entries = new Map<string, Entry>();
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  /** Lookups answered from the cache. */
  hits = 0;
  /** Lookups that found nothing usable. */
  misses = 0;

  constructor(options: VerificationCacheOptions = {}) {
    this.ttlMs = options.ttlMs ?? 60_000;
    this.maxEntries = options.maxEntries ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  /** How many entries are held (expired ones included until touched or evicted). */
  get size(): number {
    return this.entries.size;
  }

  /** The cached identity of `token`, or undefined when absent or expired. */
  get(token: string): Identity | undefined {
    if (this.ttlMs <= 0) return undefined;
    const key = keyOf(token);
    const entry = this.entries.get(key);
    if (!entry || entry.expiresAtMs <= this.now()) {
      if (entry) this.entries.delete(key);
      this.misses++;
      return undefined;
    }
    // Re-insert to mark as most recently used (a Map iterates in insertion order).
    this.entries.delete(key);
    this.entries.set(key, entry);
    this.hits++;
    return entry.identity;
  }

  /** Remembers `identity` for `token`, at most until `tokenExpiresAtMs` (undefined: no own expiry). */
  set(token: string, identity: Identity, tokenExpiresAtMs: number | undefined): void {
    if (this.ttlMs <= 0) return;
    const now = this.now();
    const expiresAtMs = Math.min(now + this.ttlMs, tokenExpiresAtMs ?? Infinity);
    if (expiresAtMs <= now) return;
    const key = keyOf(token);
    this.entries.delete(key);
    this.entries.set(key, { identity, expiresAtMs });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.entries.delete(oldest.value);
    }
  }

  /** Forgets every entry. */
  clear(): void {
    this.entries.clear();
  }
}

function keyOf(token: string): string {
  return crypto.createHash("sha256").update(token, "utf8").digest("base64");
}
