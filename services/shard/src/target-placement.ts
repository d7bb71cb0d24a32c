import type { Placement } from "@codeq/engine";
import type { Logger } from "@codeq/server-kit";
import { fillingSide, type Migration, type ShardMap } from "@codeq/shardmap";

/**
 * Where `m`'s batches put their READY tasks on the receiving side now (see Placement):
 * ahead of what it holds while copying; behind it while draining (what becomes ready
 * on the source then arrived after the rest moved) and on an abort's trip home.
 */
export function placementOf(m: Pick<Migration, "state">): Placement {
  return m.state === "copying" ? "head" : "tail";
}

/**
 * Per move a mover sends, whether its target puts READY tasks at the head of its
 * lists when asked: its ImportTasks answers say so (`places_ready_at_head`); a worker
 * from before that appends every batch and says nothing. Once a target has appended,
 * the move sends the oldest first to the end until it is over: a move that switched
 * ends midway would reorder what it had sent. The mover keeps that with the move's
 * progress in the control store, so a restarted source keeps to it too.
 */
export class TargetPlacements {
  private readonly known = new Map<string, boolean>();

  constructor(private readonly logger: Logger) {}

  /** `m`'s next batch goes to the target's head, and whether it honours that is not known yet. */
  unknown(m: Migration): boolean {
    return placementOf(m) === "head" && !this.known.has(m.id);
  }

  /** Where `m`'s next batch puts its READY tasks: `placementOf`, unless its target appends anyway. */
  of(m: Migration): Placement {
    return this.appends(m.id) ? "tail" : placementOf(m);
  }

  /** `m`'s target is known to append every batch (heard, or kept with the move's progress). */
  appends(id: string): boolean {
    return this.known.get(id) === false;
  }

  /** `m`'s stored progress says its target appends. */
  appended(id: string): void {
    this.known.set(id, false);
  }

  /**
   * Notes whether `m`'s target said it honours `ready_at_head`. True when this answer
   * is the first to show that it appends (the mover keeps that with the progress).
   */
  heard(m: Migration, placesAtHead: boolean): boolean {
    const known = this.known.get(m.id);
    if (known === false) return false;
    if (placesAtHead) {
      this.known.set(m.id, true);
      return false;
    }
    this.known.set(m.id, false);
    if (placementOf(m) === "head")
      this.logger.warn(
        { migration: m.id, to: fillingSide(m) },
        "the target predates placing moved tasks at the head of its lists: they go behind the tasks it holds (upgrade every shard worker before moving)",
      );
    return true;
  }

  /** Forgets the moves no longer in `map`. */
  keepOnly(map: ShardMap): void {
    for (const id of this.known.keys())
      if (!map.migrations.some((m) => m.id === id)) this.known.delete(id);
  }
}
