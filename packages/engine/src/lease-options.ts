import { EngineError } from "./errors";

/** The most tasks one engine call stores (an enqueue batch) or delivers (a lease). */
export const MAX_BATCH = 1000;

export interface LeaseOptions {
  /** 1..MAX_BATCH. */
  readonly max: number;
  /** Lease duration, ms: 1000..43200000. */
  readonly leaseMs: number;
  /**
   * The deliveries' size (`deliveryBytes`, summed) at most this. The store stops at the
   * bound (it reads no more payloads than that, one task more at most) and leaves the
   * rest ready, in order; what still passes it as counted here is given back at once,
   * ready again at the head of its list with its attempt not counted. Unbounded when
   * absent.
   */
  readonly maxBytes?: number;
  /** Keep the first delivery even when it alone is over `maxBytes`. Default true. */
  readonly firstAlways?: boolean;
}

export function checkLeaseMs(leaseMs: number): void {
  if (!Number.isInteger(leaseMs) || leaseMs < 1000 || leaseMs > 43_200_000) {
    throw new EngineError(
      "INVALID_ARGUMENT",
      `lease duration must be 1000..43200000 ms, got ${leaseMs}`,
    );
  }
}

export function checkLeaseOptions(options: LeaseOptions): void {
  if (!Number.isInteger(options.max) || options.max < 1 || options.max > MAX_BATCH) {
    throw new EngineError(
      "INVALID_ARGUMENT",
      `max tasks must be 1..${MAX_BATCH}, got ${options.max}`,
    );
  }
  if (options.maxBytes !== undefined && !(options.maxBytes >= 0))
    throw new EngineError("INVALID_ARGUMENT", `max bytes must be >= 0, got ${options.maxBytes}`);
  checkLeaseMs(options.leaseMs);
}
