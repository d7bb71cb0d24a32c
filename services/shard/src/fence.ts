import type { QueueRef } from "@codeq/engine";
import { currentShardOf, FENCE_REFRESH_MS, type MapCache } from "@codeq/shardmap";
import { NotOwnerError } from "./errors";

/**
 * Enqueue fencing (SPEC §4): a shard stores new tasks only for queues it owns
 * under the shard map it holds, so a router routing by an old map cannot split a
 * queue's new tasks across shards. The check and the store are not atomic: a map
 * change between them leaves tasks on the old owner, which a migration's
 * queueShards still covers (workers drain it, the mover moves it). What looks for
 * such tasks (the mover's last count before it ends a move, a fresh depth read, a
 * question about a moving queue's keys or about which imported tasks a shard holds)
 * first waits for the stores admitted before it (`settled`): the store's commands
 * can reach the store after the look's (ioredis sends a script again, after the
 * look's commands, when the store lost its script cache: NOSCRIPT).
 */
export class ShardFence {
  /** Stores admitted and not ended, in the current generation. */
  private current = 0;
  private generation = 0;
  /** Stores not ended by the generation they were admitted in, older than the current. */
  private readonly older = new Map<number, number>();
  /** What waits for every store admitted before generation `upTo` + 1 to end. */
  private waiters: { upTo: number; resolve: () => void }[] = [];

  constructor(
    private readonly shard: string,
    private readonly cache: MapCache,
  ) {}

  /** The shard map version held. */
  get mapVersion(): number {
    return this.cache.status().version;
  }

  /**
   * Resolves when this shard owns every queue; rejects with NotOwnerError naming
   * the first that it does not. A caller that routed by a newer map than the one
   * held (`seenVersion`, from the router) makes the shard re-read the map once
   * before refusing, so a freshly moved queue is not bounced back and forth; the
   * read is waited for at most FENCE_REFRESH_MS, and not at all while the control
   * store is failing (the call would hold its stream's slot for nothing).
   */
  async check(queues: readonly QueueRef[], seenVersion = 0): Promise<void> {
    let refusal = this.refusal(queues);
    if (refusal && seenVersion > refusal.mapVersion && !this.cache.status().lastError) {
      await this.cache.refreshWithin(FENCE_REFRESH_MS);
      refusal = this.refusal(queues);
    }
    if (refusal) throw refusal;
  }

  /**
   * Checks ownership under the map held now (no re-read) as the caller's store goes
   * out: throws the refusal, or counts the store as admitted until the caller passes
   * the number returned to `ended` (whatever became of the store).
   */
  admit(queues: readonly QueueRef[]): number {
    const refusal = this.refusal(queues);
    if (refusal) throw refusal;
    return this.counted();
  }

  /**
   * Counts a store admitted by a check of the caller's own (an import, by its
   * migration) as `admit` does: the caller passes the number returned to `ended`.
   */
  counted(): number {
    this.current++;
    return this.generation;
  }

  /** The store admitted in `generation` (`admit`'s answer) has ended. */
  ended(generation: number): void {
    if (generation === this.generation) {
      this.current--;
      return;
    }
    const left = (this.older.get(generation) ?? 0) - 1;
    if (left > 0) {
      this.older.set(generation, left);
      return;
    }
    this.older.delete(generation);
    this.waiters = this.waiters.filter((w) => !this.wakes(w));
  }

  /**
   * Resolves once every store admitted before the call has ended; rejects with the
   * signal's reason when `signal` aborts first (a caller that left, a worker stopping:
   * a store that does not answer holds such stores until its connection is given up).
   */
  settled(signal?: AbortSignal): Promise<void> {
    if (this.current === 0 && this.older.size === 0) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    const upTo = this.generation++;
    if (this.current > 0) this.older.set(upTo, this.current);
    this.current = 0;
    return new Promise((resolve, reject) => {
      const waiter = { upTo, resolve };
      this.waiters.push(waiter);
      signal?.addEventListener(
        "abort",
        () => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          reject(signal.reason);
        },
        { once: true },
      );
    });
  }

  /** Resolves `w` when no store it waits for is left (and says so). */
  private wakes(w: { upTo: number; resolve: () => void }): boolean {
    for (const g of this.older.keys()) if (g <= w.upTo) return false;
    w.resolve();
    return true;
  }

  private refusal(queues: readonly QueueRef[]): NotOwnerError | undefined {
    const map = this.cache.current();
    let first: { queue: QueueRef; owner: string } | undefined;
    let more = 0;
    for (const queue of queues) {
      const owner = currentShardOf(map, queue.command, queue.tenant);
      if (owner === this.shard) continue;
      if (first) more++;
      else first = { queue, owner };
    }
    if (!first) return undefined;
    const { queue, owner } = first;
    return new NotOwnerError(this.shard, queue.command, queue.tenant, owner, map.version, more);
  }
}
