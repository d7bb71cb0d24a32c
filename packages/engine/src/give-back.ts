import type { Redis } from "ioredis";
import type { Clock } from "./clock";
import type { QueueKeys, QueueRef } from "./keys";
import type { ScriptRunner } from "./script-runner";
import { timeText } from "./task-record";

/** A lease call to undo (see unlease-12.lua). */
export interface LeaseCallToUndo {
  readonly queue: QueueRef;
  readonly keys: QueueKeys;
  /** The call's nonce (14 digits) and lease deadline (ms, 13 digits), as it wrote them. */
  readonly nonce: string;
  readonly deadline: string;
  /** The ids the reply that did arrive delivered (none when the call failed). */
  readonly keep: readonly string[];
  /**
   * The ids of the call's reply in their order (their lists'), when known: what goes
   * back goes back in it. Else (a lost reply) in id order.
   */
  readonly order?: readonly string[];
  readonly reason: GiveBackReason;
}

/**
 * Why a lease call is undone: its reply was lost to a reconnect, or what it leased was
 * more than its answer may carry (`LeaseOptions.maxBytes`).
 */
export type GiveBackReason = "lost reply" | "over size";

export interface GiveBackEvents {
  /** `count` tasks of `queue` are ready again. */
  readonly onGivenBack: (queue: QueueRef, count: number, reason: GiveBackReason) => void;
  /** A give-back failed; it is tried again (see LeaseGiveBacks). */
  readonly onFailed: (err: unknown) => void;
}

/** Calls to undo kept for a retry, at most; past it the oldest is left to the reaper. */
const MAX_PENDING = 1000;
/** How often kept calls are tried again while any are kept, ms (also at every reconnect). */
const RETRY_MS = 1000;

/**
 * Gives back the tasks a lease call leased but never delivered, because a reconnect
 * lost its reply and ioredis sent it again (lease.ts, `leasing`). One that fails
 * (the store is still away) is kept and tried again when the connection is ready and
 * every second, until its lease deadline: after that the reaper takes the leases back
 * as it does any expired lease.
 */
export class LeaseGiveBacks {
  private pending: LeaseCallToUndo[] = [];
  private timer: NodeJS.Timeout | undefined;
  private retrying = false;

  constructor(
    private readonly redis: Redis,
    private readonly runner: ScriptRunner,
    private readonly clock: Clock,
    private readonly events: GiveBackEvents,
  ) {
    redis.on("ready", () => void this.retry());
    // closed for good (quit, disconnect): nothing kept can be given back any more
    redis.on("end", () => {
      this.pending = [];
      this.stopTimer();
    });
  }

  /** Calls kept for a retry. */
  get waiting(): number {
    return this.pending.length;
  }

  /** Gives back now; on failure keeps the call for a retry. Never throws. */
  async giveBack(call: LeaseCallToUndo): Promise<void> {
    try {
      const k = call.keys;
      const n = await this.runner.run<number>(
        "unlease",
        [k.state, k.leased, ...k.ready],
        [
          timeText(this.clock.now()),
          call.deadline,
          call.nonce,
          call.keep.length,
          ...call.keep,
          call.order?.length ?? 0,
          ...(call.order ?? []),
        ],
      );
      if (n > 0) report(() => this.events.onGivenBack(call.queue, n, call.reason));
    } catch (err) {
      report(() => this.events.onFailed(err));
      if (this.redis.status === "end") return; // closed for good: kept for nothing
      if (this.pending.length >= MAX_PENDING) this.pending.shift();
      this.pending.push(call);
      this.timer ??= setInterval(() => void this.retry(), RETRY_MS).unref();
    }
  }

  private async retry(): Promise<void> {
    if (this.retrying || this.pending.length === 0) return;
    this.retrying = true;
    try {
      const due = this.pending;
      this.pending = [];
      const now = this.clock.now();
      // past its deadline a lease is the reaper's
      for (const call of due) if (Number(call.deadline) > now) await this.giveBack(call);
    } finally {
      this.retrying = false;
      if (this.pending.length === 0) this.stopTimer();
    }
  }

  private stopTimer(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** Runs a caller's callback; what it throws must not stop the engine's own work (a give-back, a lease). */
export function report(callback: () => void): void {
  try {
    callback();
  } catch {
    // the caller's own failure (a logger); the give-back goes on
  }
}
