import { leaseTokenShard } from "@codeq/engine";
import type { LeaseStreamResponse } from "@codeq/proto";
import { MAX_BATCH } from "./enqueue";
import type { Forward, Routing } from "./routing";

/**
 * The lease tokens of tasks shards pushed on a client's stream that will not reach the
 * client (its stream ended, or it half-closed), by shard: given back uncounted, as the
 * client can settle none of them.
 */
export class UnsentPushes {
  private readonly byShard = new Map<string, string[]>();

  /** Keeps the lease tokens of a push that will not reach the client. */
  keep(res: LeaseStreamResponse): void {
    for (const task of res.tasks?.tasks ?? []) {
      const shard = leaseTokenShard(task.leaseToken);
      if (shard === undefined) continue;
      const tokens = this.byShard.get(shard);
      if (tokens) tokens.push(task.leaseToken);
      else this.byShard.set(shard, [task.leaseToken]);
    }
  }

  /**
   * Gives back what is kept, to the shards still in the map; what is kept meanwhile
   * (pushes still on their way) goes in up to two more rounds.
   */
  async giveBack(routing: Routing, f: Forward): Promise<void> {
    for (let round = 0; round < 3 && this.byShard.size > 0; round++) {
      const byShard = [...this.byShard];
      this.byShard.clear();
      const calls: Promise<void>[] = [];
      for (const [shard, tokens] of byShard) {
        if (!routing.pool.has(shard)) continue;
        const conn = routing.pool.get(shard);
        // a shard takes at most MAX_BATCH tokens per call
        for (let i = 0; i < tokens.length; i += MAX_BATCH)
          calls.push(routing.giveBack(conn, f, tokens.slice(i, i + MAX_BATCH)));
      }
      await Promise.all(calls);
    }
  }
}
