import type { QueueRef } from "@codeq/engine";
import { currentShardOf, FENCE_REFRESH_MS, type MapCache } from "@codeq/shardmap";
import { NotOwnerError } from "./errors";

/**
 * Enqueue fencing (SPEC §4): a shard stores new tasks only for queues it owns
 * under the shard map it holds, so a router routing by an old map cannot split a
 * queue's new tasks across shards. The check and the store are not atomic: a map
 * change between them leaves tasks on the old owner, which a migration's
 * queueShards still covers (workers drain it, the mover moves it).
 */
export class ShardFence {
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
