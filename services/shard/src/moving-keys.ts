import { messageOf } from "@codeq/common";
import type { QueueEngine, QueueRef, TaskSpec } from "@codeq/engine";
import {
  drainingSide,
  entry,
  fillingMigration,
  resolveCurrent,
  type MapCache,
  type ShardMap,
} from "@codeq/shardmap";
import type { PeerShards } from "./peers";

export interface MovingKeysOptions {
  /** Deadline of the question to the other shard, ms (the enqueue waits for it). */
  readonly timeoutMs: number;
  /** `keys` of an enqueue to `queue` were stored unchecked: shard `from` did not answer. */
  readonly onUnchecked: (queue: QueueRef, keys: number, from: string, err: string) => void;
}

/**
 * Idempotency keys during a move (SPEC §2, §5). Once a queue is routed to the shard it
 * is moving onto, a producer's retry of a keyed enqueue comes here, while the key may
 * still be bound only on the shard the queue is moving from: to a task not moved yet,
 * to one still leased there, or to one completed there. Before this shard stores a
 * keyed enqueue of such a queue, it asks that shard which of the keys it holds, and
 * binds them here to the same tasks (unless bound here already): the enqueue then
 * answers `duplicate` with the original task's id, as it would have there, as Codis
 * moves a key on demand when it is touched mid-move.
 *
 * The question costs one call to the other shard per keyed batch, during moves only.
 * A shard that does not answer (down, or hung past the deadline) does not stop the
 * enqueue: it is stored unchecked, counted and logged (`onUnchecked`), since failing
 * every keyed enqueue of a healthy shard for as long as another is down would turn
 * one shard's outage into two; a retry may then store a duplicate, which at-least-once
 * delivery already asks workers to bear.
 */
export class MovingKeys {
  constructor(
    private readonly shard: string,
    private readonly cache: MapCache,
    private readonly engine: QueueEngine,
    private readonly peers: PeerShards,
    private readonly options: MovingKeysOptions,
  ) {}

  /**
   * Binds here those of the keys of `specs` (an enqueue to `queue`) that the shard it
   * is moving from holds. Undefined when there is nothing to ask (no move onto this
   * shard, no key): the enqueue's path then pays neither a call nor a wait.
   */
  bringOver(queue: QueueRef, specs: readonly TaskSpec[]): Promise<void> | undefined {
    if (this.cache.version === 0) return undefined;
    const map = this.cache.current();
    const from = this.sourceOf(map, queue);
    if (from === undefined) return undefined;
    const keys = specs.flatMap((s) => (s.idempotencyKey ? [s.idempotencyKey] : []));
    return keys.length > 0 ? this.ask(map, from, queue, keys) : undefined;
  }

  /**
   * The shard the keys of `queue` may still be bound on: the one it is moving from
   * onto this shard, or, while a change of the default shard onto this one is being
   * finished, the former default for a queue that follows the default (a retry of an
   * enqueue the former default took as the change spread comes here).
   */
  private sourceOf(map: ShardMap, queue: QueueRef): string | undefined {
    const move = fillingMigration(map, queue.command, queue.tenant, this.shard);
    if (move) return drainingSide(move);
    const former = map.formerDefault;
    if (former === undefined || map.defaultShard !== this.shard || former === this.shard)
      return undefined;
    return resolveCurrent(map, queue.command, queue.tenant).by === "default" ? former : undefined;
  }

  private async ask(
    map: ShardMap,
    from: string,
    queue: QueueRef,
    keys: readonly string[],
  ): Promise<void> {
    const endpoint = entry(map.shards, from)?.endpoint;
    let found;
    try {
      if (!endpoint) throw new Error("it is not in the map");
      ({ bindings: found } = await this.peers
        .client(endpoint)
        .lookupIdempotencyKeys(
          { command: queue.command, tenant: queue.tenant, keys: [...new Set(keys)] },
          { deadline: new Date(Date.now() + this.options.timeoutMs) },
        ));
    } catch (err) {
      this.options.onUnchecked(queue, keys.length, from, messageOf(err));
      return;
    }
    if (found.length === 0) return;
    await this.engine.bindIdempotencyKeys(
      queue,
      found.map((b) => ({ key: b.key, taskId: b.taskId, expiresAt: b.expiresAtMs })),
    );
  }
}
