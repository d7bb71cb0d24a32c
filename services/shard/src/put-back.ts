import { ClientError, Status } from "nice-grpc";
import { messageOf } from "@codeq/common";
import type { QueueEngine, QueueRef } from "@codeq/engine";
import type { Logger } from "@codeq/server-kit";
import {
  applicableMigrations,
  entry,
  isUnfinished,
  movesOverlap,
  movesTenant,
  takesFrom,
  type Migration,
  type MigrationStore,
  type ShardMap,
} from "@codeq/shardmap";
import type { PeerCall, PeerShards } from "./peers";

/**
 * How many of the newest aborted moves away from this shard a starting worker puts
 * back a reserved batch for (`seed`): the one a restart can leave one for is the last
 * or nearly, and each costs a look at its queues' reservations.
 */
const SEEDED_MOVES = 10;

/**
 * `m` sends tasks from `shard`, in batches reserved there: the source while the move
 * copies or drains, the target on an abort's trip home. Such a move that leaves the map
 * before its batch went (an abort seen late; its other shard removed as lost) has it
 * put back here.
 */
function sendsFrom(m: Migration, shard: string): boolean {
  // (a move away from here that is aborting: its put-back may fail while it is, its
  // target down, and the move then leave the map, that target removed as lost)
  if (m.from === shard) return isUnfinished(m);
  return m.to === shard && m.state === "aborting";
}

/** The queues a migration moves, as `engine`'s shard holds them. */
export async function movedQueues(
  engine: QueueEngine,
  map: ShardMap,
  m: Migration,
): Promise<QueueRef[]> {
  if (m.tenant !== undefined) return [{ command: m.command, tenant: m.tenant }];
  const all = await engine.queues(m.command);
  return all.filter((q) => movesTenant(map, m, q.tenant));
}

export interface PutBackOptions {
  readonly shard: string;
  readonly engine: QueueEngine;
  readonly store: MigrationStore;
  readonly logger: Logger;
  readonly peers: PeerShards;
  readonly peerCall: PeerCall;
  /** True once the mover stops. */
  readonly stopped: () => boolean;
  /** Called after tasks were restored to this shard's indexes (wake the streams). */
  readonly onRestored: (queue: QueueRef, n: number) => void;
}

/**
 * The mover's put-back of batches reserved on this shard for moves away from it
 * that will not send them: a move being aborted (its tasks come home anyway), and a
 * move that left the map while this worker still held it in progress (an abort it
 * saw only once it was over: a map that lagged, announcements lost; or one whose
 * other shard was removed as lost, an abort's trip home from here included). Each
 * batch goes back but for the tasks of it the shard it was sent to holds (an import
 * stored there whose answer was lost): those are that shard's to send back, and are
 * deleted here, or they would be held on both shards. A queue another move takes from this shard keeps
 * its batch: that move sends or puts it back.
 */
export class PutBack {
  /** A reserved batch that should have gone back is still out (the last try failed). */
  private left = false;
  /**
   * The moves seen sending from this shard (`sendsFrom`), until a put-back for them has
   * run once they are seen aborting (a move away from here) or gone: one that leaves
   * the map unseen as aborting, or an abort that leaves it before its trip home ended
   * (its source removed as lost), still gets its batch put back (`due`). (A move that
   * finished costs one more look at its queues' reservations, which are empty.)
   */
  private readonly sending = new Map<string, Migration>();
  /**
   * The recent aborted moves away from here are in `sending` (`seed`): a worker
   * restarted between a lagging map's reservation and the map catching up had not seen
   * them in progress, and puts back what is still reserved for them all the same.
   */
  private seeded = false;
  /** The first failure to read the finished moves was logged (a warning, once). */
  private seedFailed = false;

  constructor(private readonly options: PutBackOptions) {}

  /** A later pass has put-backs to try (or the finished moves to read). */
  get pending(): boolean {
    return !this.seeded || this.left || this.sending.size > 0;
  }

  /** One pass: puts back every batch that is due, as far as it can. */
  async run(map: ShardMap): Promise<void> {
    const { logger, stopped } = this.options;
    this.left = false;
    if (!this.seeded) await this.seed(map);
    /**
     * Moves whose put-back failed in this pass: an older move of one of their queues
     * would take the batch another reserved for its own and ask the wrong target which
     * of it landed. Moves of other queues go on (another tenant's of the same command,
     * say: one target that is down holds up no abort but its own).
     */
    const failed: Migration[] = [];
    for (const m of this.due(map)) {
      if (stopped()) return;
      if (failed.some((f) => movesOverlap(f, m))) {
        this.left = true;
        continue;
      }
      try {
        await this.restore(map, m);
        // seen aborting or gone, and put back: no batch of it can be reserved here again
        this.sending.delete(m.id);
      } catch (err) {
        // (the store away, say): tried again on the next pass, which is scheduled for it
        this.left = true;
        failed.push(m);
        const message = messageOf(err);
        // the target has not seen the abort yet: expected for a moment, not worth a warning
        if (err instanceof ClientError && err.code === Status.FAILED_PRECONDITION) {
          logger.debug({ migration: m.id, err: message }, "put-back waits for the target");
          continue;
        }
        logger.warn(
          { migration: m.id, err: message },
          "putting back a reserved batch failed; retrying",
        );
      }
    }
  }

  /**
   * The moves away from here whose reserved batch goes back: those aborting, and those
   * seen in progress that are no longer in the map (over, their abort unseen here),
   * the newest first.
   */
  private due(map: ShardMap): Migration[] {
    const { shard } = this.options;
    for (const m of map.migrations) if (sendsFrom(m, shard)) this.sending.set(m.id, m);
    const aborting = map.migrations.filter((m) => m.state === "aborting" && m.from === shard);
    const gone = [...this.sending.values()].filter(
      (m) => !map.migrations.some((x) => x.id === m.id),
    );
    return [...aborting, ...gone.sort((a, b) => b.startedAtMs - a.startedAtMs)];
  }

  /**
   * Once per process: the newest aborted moves away from here (SEEDED_MOVES of them)
   * join `sending`, so the first pass puts back a batch reserved for one of them that
   * the process before this one reserved and never put back. Only an abort leaves such
   * a batch: a move completes only once its source holds nothing of the queue, and
   * while this worker was down no abort of a move from it could bring tasks home.
   * While the control store does not answer, every pass tries again.
   */
  private async seed(map: ShardMap): Promise<void> {
    const { store, shard, logger } = this.options;
    try {
      const finished = await store.listFinished();
      // (an abandoned move: its other shard was removed as lost, maybe with a batch
      // reserved here for it, either way)
      const aborted = finished
        .map((f) => f.migration)
        .filter(
          (m) =>
            (m.from === shard && m.state === "aborted") ||
            (m.state === "abandoned" && (m.from === shard || m.to === shard)),
        )
        .filter((m) => !map.migrations.some((x) => x.id === m.id))
        .slice(0, SEEDED_MOVES);
      for (const m of aborted) this.sending.set(m.id, m);
      this.seeded = true;
    } catch (err) {
      const fields = { err: messageOf(err) };
      const message = "reading the finished moves failed; a batch a restart left reserved waits";
      if (this.seedFailed) logger.debug(fields, message);
      else logger.warn(fields, message);
      this.seedFailed = true;
    }
  }

  /** Puts back what is reserved here for `m` (see the class). */
  private async restore(map: ShardMap, m: Migration): Promise<void> {
    const { engine, shard, logger } = this.options;
    for (const q of await movedQueues(engine, map, m)) {
      // a batch reserved for another move of the queue that takes from this shard (a
      // later one away from here, aborting or not, or one onto here being aborted) is
      // that move's to send or put back; a move onto here reserves nothing here
      const others = applicableMigrations(map, q.command, q.tenant);
      if (others.some((x) => x.id !== m.id && takesFrom(x, shard))) continue;
      const reserved = await engine.reservedIds(q);
      if (reserved.length === 0) continue;
      const landed = await this.landedThere(map, m, q, reserved);
      if (landed.length > 0) {
        await engine.confirmExport(q, landed);
        logger.info(
          { migration: m.id, queue: q, tasks: landed.length },
          "reserved tasks the target holds are left to it",
        );
      }
      const n = await engine.restoreExport(q);
      if (n > 0) {
        logger.info({ migration: m.id, queue: q, restored: n }, "reserved batch put back");
        this.options.onRestored(q, n);
      }
    }
  }

  /**
   * Which of `ids` (reserved here for `m`) the shard they were sent to holds: the
   * target, or the source on an abort's trip home.
   */
  private async landedThere(
    map: ShardMap,
    m: Migration,
    q: QueueRef,
    ids: readonly string[],
  ): Promise<string[]> {
    const receiver = m.to === this.options.shard ? m.from : m.to;
    const endpoint = entry(map.shards, receiver)?.endpoint;
    // removed from the map (done with, or lost): it holds nothing a router reads
    if (!endpoint) return [];
    const client = this.options.peers.client(endpoint);
    const held: string[] = [];
    for (let at = 0; at < ids.length; at += 1000) {
      const request = {
        command: q.command,
        tenant: q.tenant,
        migrationId: m.id,
        taskIds: ids.slice(at, at + 1000),
      };
      try {
        held.push(...(await client.heldTasks(request, this.options.peerCall())).held);
      } catch (err) {
        // a target too old to be asked: put everything back, as before it could be
        if (err instanceof ClientError && err.code === Status.UNIMPLEMENTED) return [];
        throw err;
      }
    }
    return held;
  }
}
