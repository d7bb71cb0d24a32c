import { isVersionConflict, ShardMapError } from "./errors";
import type { ShardMap, ShardMapDraft } from "./shard-map";
import type { ChangeInfo, MapSource } from "./source";

/**
 * Read-modify-write of the map: reads it, asks `edit` for the next draft (undefined:
 * nothing to change), and writes it with a compare-and-set; when another writer came
 * first it reads again and retries, up to `attempts` times. Returns the map written,
 * or the current one when `edit` changed nothing.
 */
export async function updateMap(
  source: MapSource,
  edit: (current: ShardMap) => ShardMapDraft | undefined,
  change: ChangeInfo | ((current: ShardMap) => ChangeInfo),
  attempts = 5,
): Promise<{ map: ShardMap; changed: boolean }> {
  for (let i = 1; ; i++) {
    const current = await source.get();
    if (!current) throw new ShardMapError("the control store holds no shard map");
    const draft = edit(current);
    if (!draft) return { map: current, changed: false };
    try {
      const info = typeof change === "function" ? change(current) : change;
      return {
        map: await source.compareAndSet(current.version, draft, info, current),
        changed: true,
      };
    } catch (err) {
      if (!isVersionConflict(err) || i >= attempts) throw err;
    }
  }
}

/** The map without its version and timestamp: what `edit` returns a modified copy of. */
export function draftOf(map: ShardMap): ShardMapDraft {
  const { version: _version, updatedAtMs: _updatedAtMs, ...draft } = map;
  return draft;
}
