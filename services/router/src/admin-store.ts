import { ServerError, Status } from "nice-grpc";
import { messageOf } from "@codeq/common";
import {
  isVersionConflict,
  NoShardMapError,
  progressId,
  ShardMapError,
  StaticMapError,
  updateMap,
  type MapSource,
  type Migration,
  type MigrationStore,
  type ShardMap,
  type ShardMapDraft,
} from "@codeq/shardmap";
import { precondition } from "./admin-checks";
import type { Routing } from "./routing";

/**
 * `err`, a failed read of the map, when it says the control store did not answer; not
 * when the store answered with no map or an invalid one (those calls then go to the
 * store and are answered for what it holds).
 */
const unanswered = (err: Error | undefined): Error | undefined =>
  err === undefined || err instanceof ShardMapError || err instanceof NoShardMapError
    ? undefined
    : err;

/** How long an admin call waits for the map read it asks for when the last one failed, ms. */
const STORE_RECHECK_MS = 100;

/** A read of the map for a change the control store did not answer. */
const storeDownError = (err: unknown) =>
  new ServerError(
    Status.UNAVAILABLE,
    `the control store does not answer: ${messageOf(err)}; map changes wait until it is back`,
  );

/** A read of migration records the control store did not answer. */
function storeUnavailable(err: unknown): never {
  throw new ServerError(
    Status.UNAVAILABLE,
    `the control store did not answer (${messageOf(err)}); finished migrations cannot be read now, retry`,
  );
}

/**
 * The control store as the router's admin calls read and write it: the newest map,
 * migrations' records, and changes to the map, answered at once while the store is
 * known not to answer.
 */
export class AdminStore {
  constructor(
    private readonly routing: Routing,
    private readonly source: MapSource,
    /** Where migrations' progress and finished ones are kept; none with a static map. */
    private readonly store: MigrationStore | undefined,
  ) {}

  /**
   * Why the control store is known not to answer (this router's last read of the map
   * failed, and a read asked for now has not succeeded within STORE_RECHECK_MS), or
   * undefined. Admin calls then answer at once, rather than each wait out the store
   * connection's reconnects (seconds per read); after a passing blip the read asked
   * for clears it.
   */
  private async storeDown(): Promise<Error | undefined> {
    if (!unanswered(this.routing.cache.status().lastError)) return undefined;
    // the calls of one request (a map read, then a migration's records) wait once
    if (Date.now() - this.recheckedAt >= STORE_RECHECK_MS) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.routing.cache.refresh().catch(() => undefined),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, STORE_RECHECK_MS))),
      ]).finally(() => clearTimeout(timer));
      this.recheckedAt = Date.now();
    }
    return unanswered(this.routing.cache.status().lastError);
  }

  /** When `storeDown` last asked the store again. */
  private recheckedAt = 0;

  /** A migration's progress; none while the control store does not answer. */
  async progress(m: Migration) {
    if (await this.storeDown()) return undefined;
    return this.store?.progress(progressId(m)).catch(() => undefined);
  }

  /** A finished migration's record; UNAVAILABLE while the control store does not answer. */
  async finished(id: string) {
    const down = await this.storeDown();
    if (down) storeUnavailable(down);
    return this.store?.finished(id).catch(storeUnavailable);
  }

  /**
   * Records a migration that a lost shard ends (ABANDONED), with its last progress;
   * UNAVAILABLE when the control store does not take it.
   */
  async recordAbandoned(m: Migration, lostShard: string): Promise<void> {
    const finishedAtMs = Date.now();
    const abandoned = { ...m, state: "abandoned" as const, lostShard, finishedAtMs };
    await this.store
      ?.recordFinished({
        migration: { ...abandoned, updatedAtMs: finishedAtMs },
        progress: await this.progress(m),
      })
      .catch((err: unknown) => {
        throw new ServerError(
          Status.UNAVAILABLE,
          `the control store did not take the record of migration ${m.id} (${messageOf(err)}); the map is unchanged: retry`,
        );
      });
  }

  /** Finished migrations' records; UNAVAILABLE while the control store does not answer. */
  async listFinished() {
    const down = await this.storeDown();
    if (down) storeUnavailable(down);
    return this.store?.listFinished().catch(storeUnavailable);
  }

  /** Reads the map from the control store (admin calls act on the newest map, not the cache). */
  async freshMap(): Promise<ShardMap> {
    const down = await this.storeDown();
    if (down) throw storeDownError(down);
    try {
      const map = await this.source.get();
      if (map) return map;
    } catch (err) {
      // the store answered, with a map that is not valid: nothing to act on until fixed
      if (err instanceof ShardMapError)
        throw precondition(`the control store's shard map is not valid: ${err.message}`);
      throw storeDownError(err);
    }
    throw new ServerError(Status.FAILED_PRECONDITION, "the control store holds no shard map");
  }

  /** The control store's map, or this router's when the store does not answer (`cached`). */
  mapForCheck(): Promise<{ map: ShardMap; cached: boolean }> {
    return this.freshMap().then(
      (map) => ({ map, cached: false }),
      () => ({ map: this.routing.map, cached: true }),
    );
  }

  /** Writes a change; maps validation and version conflicts to statuses. */
  async write(
    actor: string,
    action: string,
    summary: string,
    edit: (map: ShardMap) => ShardMapDraft | undefined,
    expectedVersion = 0,
  ): Promise<ShardMap> {
    try {
      const { map } = await updateMap(
        this.source,
        (current) => {
          if (expectedVersion && current.version !== expectedVersion)
            throw new ServerError(
              Status.ABORTED,
              `the shard map is at version ${current.version}, not ${expectedVersion}; read it again and retry`,
            );
          return edit(current);
        },
        { actor, action, summary },
        expectedVersion ? 1 : 5,
      );
      void this.routing.cache.refresh();
      return map;
    } catch (err) {
      if (err instanceof ServerError) throw err;
      if (isVersionConflict(err)) throw new ServerError(Status.ABORTED, err.message);
      if (err instanceof StaticMapError) throw precondition(err.message);
      if (err instanceof ShardMapError) throw precondition(err.message);
      throw new ServerError(Status.UNAVAILABLE, `the control store: ${(err as Error).message}`);
    }
  }
}
