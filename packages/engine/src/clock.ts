/**
 * The engine's clock. Scripts never read the store's clock: every script gets `now`
 * from the shard worker, which is the only writer of its store. So one clock orders
 * every transition of a shard, scripts stay deterministic (and testable with a
 * manual clock), and KVRocks's and Redis's TIME differences never matter.
 */
export interface Clock {
  /** Milliseconds since the epoch; never goes backwards. */
  now(): number;
}

/** Wall-clock milliseconds, held monotonic: a step back of the system clock is absorbed. */
export class SystemClock implements Clock {
  private last = 0;
  now(): number {
    const t = Date.now();
    if (t > this.last) this.last = t;
    return this.last;
  }
}

/** A clock moved by hand (tests, simulations). */
export class ManualClock implements Clock {
  constructor(private current = 1_700_000_000_000) {}
  now(): number {
    return this.current;
  }
  advance(ms: number): void {
    if (ms < 0) throw new Error("a clock never goes backwards");
    this.current += ms;
  }
}
