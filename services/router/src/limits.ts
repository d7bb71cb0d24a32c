import { ServerError, Status, type CallContext } from "nice-grpc";

/** Trailer telling a throttled caller how long to wait before retrying, ms. */
export const RETRY_AFTER_TRAILER = "retry-after-ms";

/**
 * A token bucket: `rate` tokens a second, holding at most `burst`. Cheap enough to
 * keep one per tenant per limit.
 */
export class TokenBucket {
  private tokens: number;
  private at: number;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = burst;
    this.at = now();
  }

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.at) * this.rate) / 1000);
    this.at = t;
  }

  /**
   * Takes `n` tokens if it has them; otherwise takes none and says how long until it
   * would, ms. A request larger than the bucket can hold goes through once the bucket
   * is full, and leaves it owing the difference (the requests after it wait that much
   * longer): otherwise it could never go through, and its retries would never end.
   */
  take(n: number): { ok: true } | { ok: false; retryAfterMs: number } {
    this.refill();
    if (n <= this.tokens || (n > this.burst && this.tokens >= this.burst)) {
      this.tokens -= n;
      return { ok: true };
    }
    const missing = Math.min(n, this.burst) - this.tokens;
    return { ok: false, retryAfterMs: Math.max(1, Math.ceil((missing * 1000) / this.rate)) };
  }

  /**
   * Takes up to `n` tokens; returns how many it took (for flows that can wait, like
   * credits): none while the bucket is empty or owes tokens (`take`).
   */
  takeUpTo(n: number): number {
    this.refill();
    const got = Math.max(0, Math.min(n, Math.floor(this.tokens)));
    this.tokens -= got;
    return got;
  }

  /**
   * Takes `n` tokens whether it has them or not: what was delivered without a charge
   * held for it (a long poll's tasks). The bucket may owe tokens after it.
   */
  charge(n: number): void {
    this.refill();
    this.tokens -= n;
  }

  /** How long until `n` tokens are there, ms (0 when they are). */
  waitFor(n: number): number {
    this.refill();
    return this.tokens >= n
      ? 0
      : Math.ceil(((Math.min(n, this.burst) - this.tokens) * 1000) / this.rate);
  }

  /** Full again: as good as a new bucket (one nobody used for a while). */
  get full(): boolean {
    this.refill();
    return this.tokens >= this.burst;
  }

  /** Gives back tokens taken for work that did not happen. */
  refund(n: number): void {
    this.tokens = Math.min(this.burst, this.tokens + n);
  }
}

/** Buckets a limit keeps before it first drops full ones. */
const SWEEP_AT_LEAST = 1_000;

export interface LimitsConfig {
  /** Tasks a tenant may enqueue per second through one router (0: no limit). */
  readonly tenantEnqueueRate: number;
  /** Tasks a tenant may lease per second through one router (0: no limit). */
  readonly tenantLeaseRate: number;
  /** Bucket size as seconds of the rate (bursts above the rate). */
  readonly burstSeconds: number;
  /** Open LeaseStreams one principal may hold on one router. */
  readonly maxStreamsPerPrincipal: number;
}

/** Per-tenant rate limits and per-principal stream limits of one router. */
export class Limits {
  private readonly enqueueBuckets = new Map<string, TokenBucket>();
  private readonly leaseBuckets = new Map<string, TokenBucket>();
  private readonly streams = new Map<string, number>();
  /** Per bucket map: its size at which the next new bucket first sweeps it. */
  private readonly sweepAt = new Map<Map<string, TokenBucket>, number>([
    [this.enqueueBuckets, SWEEP_AT_LEAST],
    [this.leaseBuckets, SWEEP_AT_LEAST],
  ]);

  constructor(
    private readonly config: LimitsConfig,
    private readonly now: () => number = Date.now,
  ) {}

  private bucket(map: Map<string, TokenBucket>, tenant: string, rate: number): TokenBucket {
    let b = map.get(tenant);
    if (!b) {
      // buckets come one per tenant that calls: those full again are dropped now and
      // then, so tenants that come and go do not pile up
      if (map.size >= this.sweepAt.get(map)!) this.sweep(map);
      b = new TokenBucket(rate, Math.max(1, rate * this.config.burstSeconds), this.now);
      map.set(tenant, b);
    }
    return b;
  }

  /** Drops the buckets that are full (a new one would be the same); the next sweep comes at twice what is left. */
  private sweep(map: Map<string, TokenBucket>): void {
    for (const [tenant, b] of map) if (b.full) map.delete(tenant);
    this.sweepAt.set(map, Math.max(SWEEP_AT_LEAST, 2 * map.size));
  }

  /** Enqueue and lease buckets kept now (for tests). */
  get bucketsKept(): number {
    return this.enqueueBuckets.size + this.leaseBuckets.size;
  }

  /**
   * RESOURCE_EXHAUSTED (with retry-after-ms) when `tenant` may not enqueue `n` tasks
   * now. Returns the bucket charged (undefined without an enqueue limit), to refund
   * what was not stored.
   */
  enqueue(ctx: CallContext | undefined, tenant: string, n: number): TokenBucket | undefined {
    const rate = this.config.tenantEnqueueRate;
    if (rate <= 0) return undefined;
    const b = this.bucket(this.enqueueBuckets, tenant, rate);
    this.admit(ctx, b, n, "enqueue", rate);
    return b;
  }

  /** The lease bucket of a tenant, or undefined without a lease limit. */
  leaseBucket(tenant: string): TokenBucket | undefined {
    const rate = this.config.tenantLeaseRate;
    return rate > 0 ? this.bucket(this.leaseBuckets, tenant, rate) : undefined;
  }

  /** RESOURCE_EXHAUSTED when `tenant` may not lease `n` tasks now (unary Lease). */
  lease(ctx: CallContext | undefined, tenant: string, n: number): TokenBucket | undefined {
    const b = this.leaseBucket(tenant);
    if (b) this.admit(ctx, b, n, "lease", this.config.tenantLeaseRate);
    return b;
  }

  private admit(
    ctx: CallContext | undefined,
    bucket: TokenBucket,
    n: number,
    what: string,
    rate: number,
  ): void {
    const got = bucket.take(n);
    if (got.ok) return;
    ctx?.trailer.set(RETRY_AFTER_TRAILER, String(got.retryAfterMs));
    throw new ServerError(
      Status.RESOURCE_EXHAUSTED,
      `this tenant's ${what} rate limit (${rate} tasks/s) is reached; retry in ${got.retryAfterMs} ms`,
    );
  }

  /**
   * Counts a new stream of `principal` of `tenant` (principals are named per tenant:
   * two tenants' may share a name); RESOURCE_EXHAUSTED past the cap. Returns its release.
   */
  openStream(tenant: string, principal: string): () => void {
    const key = `${tenant}/${principal}`;
    const open = this.streams.get(key) ?? 0;
    if (open >= this.config.maxStreamsPerPrincipal)
      throw new ServerError(
        Status.RESOURCE_EXHAUSTED,
        `at most ${this.config.maxStreamsPerPrincipal} LeaseStreams per caller on one router; close one first`,
      );
    this.streams.set(key, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.streams.get(key) ?? 1) - 1;
      if (left > 0) this.streams.set(key, left);
      else this.streams.delete(key);
    };
  }
}
