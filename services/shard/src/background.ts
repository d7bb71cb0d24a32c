import { queueId, type QueueEngine, type QueueRef } from "@codeq/engine";
import type { Logger } from "@codeq/server-kit";
import type { ShardConfig } from "./config";
import type { Metrics } from "./metrics";
import type { Notifier } from "./notifier";

/** Cleanup calls one queue gets in one pass at most (a queue that keeps filling its batch). */
const CLEANUP_ROUNDS = 10;
/**
 * Errors of the store, whatever call they come from (some come out of a script, at its
 * first write): out of memory, read-only, refusing writes after a failed save, loading,
 * busy, and the like.
 */
const STORE_REFUSALS =
  /\b(OOM|READONLY|MISCONF|LOADING|BUSY|MASTERDOWN|NOREPLICAS|CLUSTERDOWN|TRYAGAIN|NOSCRIPT|NOAUTH|NOPERM|WRONGPASS)\b/;

/** The store's fault: the connection's errors, and its refusals of every write. */
const storeFault = (err: unknown) =>
  (err as Error | undefined)?.name !== "ReplyError" || STORE_REFUSALS.test((err as Error).message);

/**
 * The queue's fault for certain: a key of the wrong type, or a script failing on what
 * it read (a record it cannot parse). Other errors the store answers may be either.
 */
const queueFault = (err: unknown) =>
  !storeFault(err) && /^WRONGTYPE|user_script|Error running script/.test((err as Error).message);
/** How many of the first queues in the due index are read to find one not left out, at most. */
const MAX_PASSED_OVER = 1_000;
/** Queues one due pass takes at most. */
const DUE_QUEUES = 100;
/** The longest a queue whose promote or reap keeps failing is left out of the due passes, ms. */
const MAX_FAILING_BACKOFF_MS = 10_000;

/**
 * The shard worker's own background work, each loop one pass at a time:
 * - the due loop sleeps until the earliest scheduled run-at or lease deadline of
 *   the shard (or until `wakeAt` brings it forward), then promotes due tasks and
 *   reaps expired leases, queue by queue, bounded per pass, and wakes the streams
 *   of every queue that got ready tasks;
 * - the cleanup loop applies retention every `cleanupIntervalMs` to the next
 *   `cleanupQueues` registered queues, walking the registry pass after pass (and so
 *   forgets those left with nothing);
 * - the re-wake loop nudges one parked waiter per topic every `rewakeMs`.
 */
export class BackgroundWork {
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private sleepUntil = Infinity;
  private wakeSleeper: (() => void) | undefined;
  /**
   * While the due loop reads the next due time (not asleep): the earliest time a
   * wake-up was asked for, which that read may have missed. The sleep after it is no
   * longer than that.
   */
  private wakeBy = Infinity;
  private readonly loops: Promise<void>[] = [];
  private readonly stopping = new AbortController();
  /** Where the next cleanup pass goes on in the queue registry (an SSCAN cursor). */
  private cleanupCursor = "0";
  /**
   * Queues whose promote or reap failed (a record the script cannot read, say): left out
   * of the due passes until `until`, for longer after each failure, so one such queue
   * (first in the due index, for it stays due) neither slows the others nor has every
   * pass fail.
   */
  private readonly failing = new Map<string, { until: number; failures: number }>();

  constructor(
    private readonly engine: QueueEngine,
    private readonly notifier: Notifier,
    private readonly config: ShardConfig,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.loops.push(
      this.dueLoop(),
      this.every(this.config.cleanupIntervalMs, () => this.cleanupPass(), "cleanup"),
    );
    this.loops.push(
      this.every(this.config.rewakeMs, async () => this.notifier.wakeOnePerTopic(), "rewake"),
    );
  }

  /** Something becomes due at `at` (a new lease): wake the due loop by then. */
  wakeAt(at: number): void {
    if (!this.wakeSleeper) this.wakeBy = Math.min(this.wakeBy, at);
    else if (at < this.sleepUntil) this.wakeSleeper();
  }

  /** A delayed task was stored whose run-at the caller does not know: re-read the earliest due time now. */
  recheck(): void {
    if (this.wakeSleeper) this.wakeSleeper();
    else this.wakeBy = 0;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    this.wakeSleeper?.();
    await Promise.all(this.loops);
  }

  private async dueLoop(): Promise<void> {
    while (!this.stopped) {
      try {
        // what is asked from here on may come too late for the read below
        this.wakeBy = Infinity;
        // the next due time of a queue not left out for failing (it stays first in time)
        const next = await this.engine.nextDueAt(
          (q) => this.leftOut(q),
          Math.min(this.failing.size + 1, MAX_PASSED_OVER),
        );
        const now = Date.now();
        // a pass that found every due queue left out has nothing to do until one is back
        if (next !== undefined && next <= now && (await this.duePass())) continue;
        await this.sleep(
          Math.min(
            next === undefined || next <= now ? Infinity : next - now,
            this.wakeBy - now,
            this.failingUntil() - now,
            this.config.dueIdleMs,
          ),
        );
      } catch (err) {
        this.logger.warn({ err: (err as Error).message }, "due loop pass failed; retrying");
        // not cut short by wake-ups: with the store away, each would be another failure
        await this.pause(this.config.dueIdleMs);
      }
    }
  }

  /**
   * One bounded pass over the queues that have something due, but those left out for
   * failing; false when every due queue was left out. Every call of it ends before the
   * pass does (the next pass may not overlap it), and what one of them made ready is
   * announced even when another failed. A queue whose call failed is left out for a
   * while (`failing`), and the failures are logged once a pass.
   */
  private async duePass(): Promise<boolean> {
    const now = Date.now();
    // read past the queues left out (first in time, for they stay due): else as many of
    // them as a pass takes would hold back every queue behind them until they are back
    const due = await this.engine.dueQueues(
      DUE_QUEUES + Math.min(this.failing.size, MAX_PASSED_OVER),
    );
    const dueKeys = new Set(due.map(queueId));
    for (const [key, { until }] of this.failing)
      if (until <= now && !dueKeys.has(key)) this.failing.delete(key); // mended, or gone
    const queues = due.filter((q) => !this.leftOut(q, now)).slice(0, DUE_QUEUES);
    if (queues.length === 0) return false;
    const outcomes = await Promise.all(queues.map((queue) => this.dueCalls(queue)));
    const failed = outcomes.filter((err) => err !== undefined);
    const failedQueues = queues.filter((_, i) => outcomes[i] !== undefined);
    // the store not answering is not the queues' fault (left out, they would be held
    // back long after it returns): the pass fails, and is tried again after a wait
    const away = failed.find(storeFault);
    if (away) throw new Error(`${failed.length} queue(s) failed: ${(away as Error).message}`);
    // several queues, every one failing, none of them for certain its own fault: the
    // store, most likely, in words not known here
    if (queues.length > 1 && failed.length === queues.length && !failed.some(queueFault))
      throw new Error(`every queue of the pass failed: ${(failed[0] as Error).message}`);
    for (const queue of failedQueues) this.leaveOut(queue);
    if (failed.length > 0)
      this.logger.warn(
        {
          err: (failed[0] as Error).message,
          queues: failed.length,
          failingQueues: this.failing.size,
        },
        "due pass: promote or reap failed for some queues; they are left out for a while and tried again",
      );
    return true;
  }

  /** Whether `queue` is left out of the due passes now, for failing. */
  private leftOut(queue: QueueRef, now = Date.now()): boolean {
    return (this.failing.get(queueId(queue))?.until ?? 0) > now;
  }

  /** The earliest time a queue left out of the due passes is taken again (Infinity: none). */
  private failingUntil(): number {
    const now = Date.now();
    let earliest = Infinity;
    // one whose time has come and that is not due any more (mended, or its entry gone)
    // waits for the next pass to be dropped: not a time to wake for
    for (const { until } of this.failing.values())
      if (until > now) earliest = Math.min(earliest, until);
    return earliest;
  }

  /**
   * Promotes and reaps one queue, both calls run to their end; resolves with the first
   * failure (undefined when both succeeded, and the queue is no longer left out).
   */
  private async dueCalls(queue: QueueRef): Promise<unknown> {
    const calls = [
      this.metrics
        .time("promote", () => this.engine.promote(queue, this.config.dueBatch))
        .then((promoted) => {
          if (promoted > 0) this.notifier.notify(queue, promoted);
        }),
      this.metrics
        .time("reap", () => this.engine.reap(queue, this.config.dueBatch))
        .then((reaped) => {
          this.metrics.reaped.inc(reaped.reaped);
          // only those ready again at once (a zero backoff) wake waiters: the others
          // wait out their backoff, and their promotion wakes them then
          if (reaped.ready > 0) this.notifier.notify(queue, reaped.ready);
        }),
    ];
    const failed = (await Promise.allSettled(calls)).find((r) => r.status === "rejected");
    if (failed) return failed.reason;
    this.failing.delete(queueId(queue));
    return undefined;
  }

  /** Leaves `queue` out of the due passes for a while, longer each time in a row. */
  private leaveOut(queue: QueueRef): void {
    const key = queueId(queue);
    const failures = (this.failing.get(key)?.failures ?? 0) + 1;
    const backoff = Math.min(this.config.dueIdleMs * 2 ** (failures - 1), MAX_FAILING_BACKOFF_MS);
    this.failing.set(key, { until: Date.now() + backoff, failures });
  }

  /**
   * Retention over the next `cleanupQueues` queues of the registry, from where the last
   * pass stopped (a shard of very many queues is swept over several passes, each of
   * them bounded). A queue whose call filled its batch (it completes faster than one
   * batch a pass) is swept again, up to CLEANUP_ROUNDS calls a pass. A queue whose
   * cleanup fails does not stop the others'; the pass then fails, naming how many.
   */
  private async cleanupPass(): Promise<void> {
    const limit = this.config.cleanupBatch;
    let failed = 0;
    let first: unknown;
    const page = await this.engine.queuePage(this.cleanupCursor, this.config.cleanupQueues);
    this.cleanupCursor = page.next;
    for (const queue of page.queues) {
      for (let round = 0; round < CLEANUP_ROUNDS && !this.stopped; round++) {
        try {
          const out = await this.metrics.time("cleanup", () => this.engine.cleanup(queue, limit));
          this.metrics.cleaned.inc(out.completed + out.dead);
          if (Math.max(out.completed, out.dead, out.idempotencyKeys) < limit) break;
        } catch (err) {
          failed++;
          first ??= err;
          break;
        }
      }
      if (this.stopped) return;
    }
    if (failed > 0)
      throw new Error(`cleanup failed for ${failed} queue(s): ${(first as Error).message}`);
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.sleepUntil = Date.now() + ms;
    return new Promise((resolve) => {
      this.wakeSleeper = () => {
        clearTimeout(this.timer);
        this.wakeSleeper = undefined;
        this.sleepUntil = Infinity;
        resolve();
      };
      this.timer = setTimeout(() => this.wakeSleeper?.(), Math.max(0, ms));
    });
  }

  /** Runs `pass` every `intervalMs`, never two at once, until stopped. */
  private async every(intervalMs: number, pass: () => Promise<void>, name: string): Promise<void> {
    while (!this.stopped) {
      await this.pause(intervalMs);
      if (this.stopped) return;
      try {
        await pass();
      } catch (err) {
        this.logger.warn(
          { err: (err as Error).message, loop: name },
          "background pass failed; retrying",
        );
      }
    }
  }

  /** Waits `ms`, or less if stopped; leaves no listener behind. */
  private pause(ms: number): Promise<void> {
    const signal = this.stopping.signal;
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
    });
  }
}
