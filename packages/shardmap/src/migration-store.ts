/**
 * What the control store keeps about migrations besides the map: each one's live
 * progress (written by the mover on the shard it drains, read by routers for
 * GetMigration), and the finished ones (COMPLETED or ABORTED, newest 1000), which
 * leave the map when they finish. Both writes are idempotent, so a mover that
 * crashed and repeats a step records nothing twice.
 *
 * Keys: `<prefix>:ctl:migration:<id>` (JSON progress, expires 7 days after its last
 * update), `<prefix>:ctl:migrations:done` (hash id → JSON) with the index
 * `<prefix>:ctl:migrations:done:at` (zset by finish time).
 */
import { Redis, type ChainableCommander, type RedisOptions } from "ioredis";
import { CONTROL_SOCKET_TIMEOUT_MS, DEFAULT_PREFIX, type Migration } from "./shard-map";

/**
 * Runs a MULTI and throws the first command's error: `exec` answers each command's
 * error in its reply (WRONGTYPE, say) instead of rejecting.
 */
async function applied(multi: ChainableCommander): Promise<void> {
  for (const [err] of (await multi.exec()) ?? []) if (err) throw err;
}

export interface MigrationCounts {
  ready: number;
  scheduled: number;
  dead: number;
  leased: number;
  idempotencyKeys: number;
}

export interface MigrationProgress {
  /** Moved so far, by the state they were in when they moved. */
  readonly moved: MigrationCounts;
  /** What the shard being drained still holds of the queue, as of updatedAtMs. */
  readonly remaining: MigrationCounts;
  readonly updatedAtMs: number;
  /** Tasks moved per second over the last pass. */
  readonly ratePerSecond: number;
  readonly lastError?: string;
  /**
   * The target appends every batch (a worker from before `ready_at_head`): the source
   * sends each list's oldest tasks first until the move is over, even after a restart.
   */
  readonly targetAppends?: boolean;
}

/**
 * Under which id a migration's progress is kept: its own, and while it is aborting,
 * one of the way back (its tasks counted again as they return, from none moved, and
 * what remains counted on the target), so that the forward count, which the source's
 * mover may still write as the abort reaches it, neither adds to it nor overwrites it.
 */
export function progressId(m: Pick<Migration, "id" | "state">): string {
  return m.state === "aborting" || m.state === "aborted" ? `${m.id}:back` : m.id;
}

/** A migration that left the map: its final state and progress. */
export interface FinishedMigration {
  readonly migration: Migration;
  readonly progress?: MigrationProgress;
}

export const FINISHED_CAP = 1000;
const PROGRESS_TTL_MS = 7 * 24 * 3600_000;

export const emptyCounts = (): MigrationCounts => ({
  ready: 0,
  scheduled: 0,
  dead: 0,
  leased: 0,
  idempotencyKeys: 0,
});

export class MigrationStore {
  private readonly redis: Redis;
  private readonly prefix: string;

  constructor(url: string, prefix = DEFAULT_PREFIX, options: RedisOptions = {}) {
    this.prefix = prefix;
    this.redis = new Redis(url, {
      protocol: 2,
      maxRetriesPerRequest: 1,
      socketTimeout: CONTROL_SOCKET_TIMEOUT_MS,
      ...options,
    });
    this.redis.on("error", () => undefined); // callers see failures on their calls
  }

  private progressKey(id: string): string {
    return `${this.prefix}:ctl:migration:${id}`;
  }

  private get doneKey(): string {
    return `${this.prefix}:ctl:migrations:done`;
  }

  async progress(id: string): Promise<MigrationProgress | undefined> {
    const raw = await this.redis.get(this.progressKey(id));
    return raw ? (JSON.parse(raw) as MigrationProgress) : undefined;
  }

  async saveProgress(id: string, progress: MigrationProgress): Promise<void> {
    await this.redis.set(this.progressKey(id), JSON.stringify(progress), "PX", PROGRESS_TTL_MS);
  }

  /** Records a finished migration (idempotent by id); keeps the newest FINISHED_CAP. */
  async recordFinished(finished: FinishedMigration): Promise<void> {
    const m = finished.migration;
    const at = m.finishedAtMs ?? Date.now();
    await applied(
      this.redis
        .multi()
        .hset(this.doneKey, m.id, JSON.stringify(finished))
        .zadd(`${this.doneKey}:at`, at, m.id),
    );
    const excess = (await this.redis.zcard(`${this.doneKey}:at`)) - FINISHED_CAP;
    if (excess > 0) {
      const old = await this.redis.zrange(`${this.doneKey}:at`, "0", String(excess - 1));
      if (old.length > 0)
        await applied(
          this.redis
            .multi()
            .hdel(this.doneKey, ...old)
            .zrem(`${this.doneKey}:at`, ...old),
        );
    }
  }

  async finished(id: string): Promise<FinishedMigration | undefined> {
    const raw = await this.redis.hget(this.doneKey, id);
    return raw ? (JSON.parse(raw) as FinishedMigration) : undefined;
  }

  /** Finished migrations, newest first. */
  async listFinished(limit = FINISHED_CAP, offset = 0): Promise<FinishedMigration[]> {
    const ids = await this.redis.zrevrange(
      `${this.doneKey}:at`,
      String(offset),
      String(offset + limit - 1),
    );
    if (ids.length === 0) return [];
    const raws = await this.redis.hmget(this.doneKey, ...ids);
    return raws
      .filter((r): r is string => r !== null)
      .map((r) => JSON.parse(r) as FinishedMigration);
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
