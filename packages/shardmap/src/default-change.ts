import { newMigrationId } from "./migration-id";
import {
  entry,
  isUnfinished,
  type Migration,
  type ShardMap,
  type ShardMapDraft,
} from "./shard-map";
import { draftOf } from "./update";

/** What the last step of a change of the default shard writes (`finishDefaultChange`). */
export interface FinishedDefaultChange {
  readonly draft: ShardMapDraft;
  /** The migrations it starts: one per command the former default took meanwhile. */
  readonly started: Migration[];
}

/** Who a former default's worker is when it finishes the change itself (DefaultChangeFinisher). */
export const formerDefaultActor = (shard: string): string => `shard@${shard}`;

/** The audit summary of that step. */
export const finishedDefaultSummary = (former: string): string =>
  `finished: ${former} is no longer read for the default's queues`;

/**
 * The last step of a change of the default shard from `former` (the map's
 * `formerDefault`), given `held`: the commands its worker holds tasks of, read once
 * its fencing took the change (nothing of a queue that follows the default is added
 * after). Each that follows another shard by default now, and is not moving off
 * `former` already, gets a migration onto the default (as AssignCommand starts one),
 * and `formerDefault` is cleared, in one change. Undefined when `current` records no
 * such change (finished meanwhile).
 */
export function finishDefaultChange(
  current: ShardMap,
  former: string,
  held: readonly string[],
  requestedBy: string,
): FinishedDefaultChange | undefined {
  if (current.formerDefault !== former) return undefined;
  const started = held
    .filter((command) => strayOf(current, command, former))
    .map((command): Migration => ({
      id: newMigrationId(),
      command,
      from: former,
      to: current.defaultShard,
      state: "copying",
      startedAtMs: Date.now(),
      requestedBy,
      hadOwnRoute: false,
      mapVersion: current.version + 1,
    }));
  const { formerDefault: _done, ...draft } = draftOf(current);
  return { draft: { ...draft, migrations: [...draft.migrations, ...started] }, started };
}

/**
 * Whether `command`, of which shard `former` holds tasks, follows another shard by
 * default now (no mapping of its own) with no move of it off `former` unfinished.
 */
function strayOf(map: ShardMap, command: string, former: string): boolean {
  return (
    entry(map.commands, command) === undefined &&
    map.defaultShard !== former &&
    !map.migrations.some((m) => isUnfinished(m) && m.command === command && m.from === former)
  );
}
