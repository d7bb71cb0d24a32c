import { withTimeout } from "@codeq/common";
import { FINISHED_CAP, type FinishedMigration } from "@codeq/shardmap";

/** How long a GetTask miss waits for the control store's migration history, ms. */
export const HISTORY_WAIT_MS = 250;

/** How long a history read that failed stands before the store is asked again, ms. */
const FAILED_READ_MS = 1_000;

/**
 * The shards a queue lived on before its finished moves: a completed move leaves the
 * tasks completed on its source there until retention removes them (and an
 * idempotent enqueue may answer with such a task's id), an aborted one those
 * completed on its target. A GetTask that its queue's own shards do not answer asks
 * these, not every shard in the map: one caller's misses would otherwise cost a call
 * to each shard.
 *
 * The history is the control store's record of finished migrations (newest
 * FINISHED_CAP), read again when the map's version changes (a move leaves the map in
 * a write after its record is kept). Unknown, and every shard is asked as before,
 * when there is no control store (a static map), the store does not answer within
 * HISTORY_WAIT_MS, or the record is full (older moves may have been dropped).
 */
export class FormerShards {
  private read: HistoryRead | undefined;

  constructor(
    private readonly history: { listFinished(): Promise<FinishedMigration[]> } | undefined,
    private readonly mapVersion: () => number,
  ) {}

  /**
   * The shards finished moves of `command` (for `tenant`, or of any tenant when
   * `allTenants`) went from or to; undefined when the history is not known.
   */
  async of(command: string, tenant: string, allTenants: boolean): Promise<string[] | undefined> {
    const finished = await this.finished();
    if (finished === undefined) return undefined;
    const shards = new Set<string>();
    for (const { migration: m } of finished) {
      if (m.command !== command) continue;
      if (m.tenant !== undefined && !allTenants && m.tenant !== tenant) continue;
      shards.add(m.from);
      shards.add(m.to);
    }
    return [...shards];
  }

  private finished(): Promise<Finished> {
    if (!this.history) return Promise.resolve(undefined);
    const version = this.mapVersion();
    const now = Date.now();
    const r = this.read;
    const stale =
      r === undefined || r.version !== version || (r.failed && now - r.atMs >= FAILED_READ_MS);
    if (stale) {
      const read: HistoryRead = {
        version,
        atMs: now,
        failed: false,
        finished: withTimeout(
          this.history.listFinished(),
          HISTORY_WAIT_MS,
          "the control store",
        ).then(
          (list) => (list.length >= FINISHED_CAP ? undefined : list),
          () => {
            read.failed = true;
            return undefined;
          },
        ),
      };
      this.read = read;
    }
    return this.read!.finished;
  }
}

type Finished = readonly FinishedMigration[] | undefined;

/** One read of the history: for which map version, when, and whether it failed. */
interface HistoryRead {
  readonly version: number;
  readonly atMs: number;
  failed: boolean;
  readonly finished: Promise<Finished>;
}
