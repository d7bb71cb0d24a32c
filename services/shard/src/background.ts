import type { QueueEngine } from "@codeq/engine";
import type { Logger } from "@codeq/server-kit";
import type { ShardConfig } from "./config";
import type { Metrics } from "./metrics";
import type { Notifier } from "./notifier";

/** Cleanup calls one queue gets in one pass at most (a queue that keeps filling its batch). */
const CLEANUP_ROUNDS = 10;

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
        const next = await this.engine.nextDueAt();
        const now = Date.now();
        if (next !== undefined && next <= now) {
          await this.duePass();
          continue;
        }
        await this.sleep(
          Math.min(
            next === undefined ? Infinity : next - now,
            this.wakeBy - now,
            this.config.dueIdleMs,
          ),
        );
      } catch (err) {
        this.logger.warn({ err: (err as Error).message }, "due loop pass failed; retrying");
        await this.sleep(this.config.dueIdleMs);
      }
    }
  }

  /**
   * One bounded pass over the queues that have something due. Every call of it ends
   * before the pass does (the next pass may not overlap it), and what one of them made
   * ready is announced even when another failed; then the pass fails, naming how many.
   */
  private async duePass(): Promise<void> {
    const queues = await this.engine.dueQueues(100);
    const calls = queues.flatMap((queue) => [
      this.metrics
        .time("promote", () => this.engine.promote(queue, this.config.dueBatch))
        .then((promoted) => {
          if (promoted > 0) this.notifier.notify(queue, promoted);
        }),
      this.metrics
        .time("reap", () => this.engine.reap(queue, this.config.dueBatch))
        .then((reaped) => {
          this.metrics.reaped.inc(reaped.reaped);
          // reaped leases may be ready again at once (a zero backoff)
          const ready = reaped.reaped - reaped.dead;
          if (ready > 0) this.notifier.notify(queue, ready);
        }),
    ]);
    const failed = (await Promise.allSettled(calls)).filter((r) => r.status === "rejected");
    if (failed.length > 0)
      throw new Error(
        `${failed.length} promote/reap call(s) failed: ${(failed[0]!.reason as Error).message}`,
      );
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
