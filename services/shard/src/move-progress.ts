import type { ExportedTask } from "@codeq/engine";
import {
  emptyCounts,
  progressId,
  type Migration,
  type MigrationCounts,
  type MigrationProgress,
  type MigrationStore,
} from "@codeq/shardmap";
import type { TargetPlacements } from "./target-placement";

const COUNTED = { READY: "ready", SCHEDULED: "scheduled", DEAD: "dead" } as const;

/**
 * What a mover keeps of the moves it drains in the control store, for GetMigration
 * and for the process after it: the counts moved so far (by the state they moved
 * in), what remains, the rate, the last error, and whether the target appends every
 * batch (`TargetPlacements`). A move's counts are read once per process and kept
 * here; each save writes them whole.
 */
export class MoveProgress {
  private readonly moved = new Map<string, MigrationCounts>();

  constructor(
    private readonly store: MigrationStore,
    private readonly placements: TargetPlacements,
  ) {}

  /**
   * `m`'s counts moved so far, to add to (`tally`): the stored ones at first. The same
   * read tells whether its target appends, while this process does not know (it
   * started since, or its map lacked the move for a moment: `TargetPlacements`).
   */
  async resume(m: Migration): Promise<MigrationCounts> {
    const id = progressId(m);
    let moved = this.moved.get(id);
    if (moved && !this.placements.unknown(m)) return moved;
    const stored = await this.store.progress(id);
    if (!moved) {
      moved = stored?.moved ?? emptyCounts();
      this.moved.set(id, moved);
    }
    if (stored?.targetAppends) this.placements.appended(m.id);
    return moved;
  }

  /**
   * Records with `m`'s progress that its target appends (every later save keeps it),
   * best effort: the next save writes it too.
   */
  async keepAppending(m: Migration): Promise<void> {
    await this.save(m).catch(() => undefined);
  }

  /** Writes `m`'s progress; what is not given stays as stored (the last error goes). */
  async save(
    m: Migration,
    remaining?: MigrationCounts,
    ratePerSecond?: number,
    lastError?: string,
  ): Promise<void> {
    const id = progressId(m);
    const previous = await this.store.progress(id);
    const progress: MigrationProgress = {
      moved: this.moved.get(id) ?? previous?.moved ?? emptyCounts(),
      remaining: remaining ?? previous?.remaining ?? emptyCounts(),
      updatedAtMs: Date.now(),
      ratePerSecond: ratePerSecond ?? previous?.ratePerSecond ?? 0,
      ...(lastError ? { lastError } : {}),
      ...(this.placements.appends(m.id) || previous?.targetAppends ? { targetAppends: true } : {}),
    };
    await this.store.saveProgress(id, progress);
  }

  /** `m`'s final progress, for the finished record, as it finishes at `atMs`. */
  async final(m: Migration, remaining: MigrationCounts, atMs: number): Promise<MigrationProgress> {
    const id = progressId(m);
    const stored = await this.store.progress(id);
    return {
      moved: this.moved.get(id) ?? stored?.moved ?? emptyCounts(),
      remaining,
      updatedAtMs: atMs,
      ratePerSecond: stored?.ratePerSecond ?? 0,
    };
  }

  /** `m` is over: its counts are no longer kept here. */
  forget(m: Migration): void {
    this.moved.delete(progressId(m));
  }
}

/** Adds what moved (the target holds it) to `moved`, by the state it moved in. */
export function tally(
  moved: MigrationCounts,
  batch: readonly ExportedTask[],
  held: Set<string>,
): number {
  let n = 0;
  for (const e of batch) {
    if (!held.has(e.task.id)) continue;
    const field = COUNTED[e.task.state as keyof typeof COUNTED];
    if (field) moved[field]++;
    if (e.idempotencyExpiresAt > 0) moved.idempotencyKeys++;
    n++;
  }
  return n;
}
