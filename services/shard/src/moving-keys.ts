import { ServerError, Status } from "nice-grpc";
import { messageOf } from "@codeq/common";
import type { QueueEngine, QueueRef } from "@codeq/engine";
import {
  applicableMigrations,
  drainingSide,
  entry,
  fillingSide,
  type MapCache,
} from "@codeq/shardmap";
import type { PeerShards } from "./peers";

/**
 * Idempotency keys during a move (SPEC §2, §5). Once a queue is routed to the shard it
 * is moving onto, a producer's retry of a keyed enqueue comes here, while the key may
 * still be bound only on the shard the queue is moving from: to a task not moved yet,
 * to one still leased there, or to one completed there. Before this shard stores a
 * keyed enqueue of such a queue, it asks that shard which of the keys it holds, and
 * binds them here to the same tasks (unless bound here already): the enqueue then
 * answers `duplicate` with the original task's id, as it would have there.
 *
 * The question costs one call to the other shard per keyed batch, during moves only.
 * A shard that does not answer fails the enqueue UNAVAILABLE (retry): storing it
 * unchecked could store the same work twice.
 */
export class MovingKeys {
  constructor(
    private readonly shard: string,
    private readonly cache: MapCache,
    private readonly engine: QueueEngine,
    private readonly peers: PeerShards,
    /** Deadline of the question, ms. */
    private readonly timeoutMs: number,
  ) {}

  /** Binds here those of `keys` (of an enqueue to `queue`) the shard it is moving from holds. */
  async bringOver(queue: QueueRef, keys: readonly string[]): Promise<void> {
    if (keys.length === 0 || this.cache.status().version === 0) return;
    const map = this.cache.current();
    const move = applicableMigrations(map, queue.command, queue.tenant).find(
      (m) => fillingSide(m) === this.shard,
    );
    if (!move) return;
    const from = drainingSide(move);
    const unanswered = (why: string) =>
      new ServerError(
        Status.UNAVAILABLE,
        `${queue.command}/${queue.tenant} is moving onto shard ${this.shard} from shard ${from}, which holds idempotency keys of it until the move ends, and could not be asked about this enqueue's (${why}); nothing was stored, retry`,
      );
    const endpoint = entry(map.shards, from)?.endpoint;
    if (!endpoint) throw unanswered("it is not in the map");
    let found;
    try {
      ({ bindings: found } = await this.peers
        .client(endpoint)
        .lookupIdempotencyKeys(
          { command: queue.command, tenant: queue.tenant, keys: [...new Set(keys)] },
          { deadline: new Date(Date.now() + this.timeoutMs) },
        ));
    } catch (err) {
      throw unanswered(messageOf(err));
    }
    if (found.length === 0) return;
    await this.engine.bindIdempotencyKeys(
      queue,
      found.map((b) => ({ key: b.key, taskId: b.taskId, expiresAt: b.expiresAtMs })),
    );
  }
}
