import type { internal, MigrationSide } from "@codeq/proto";
import {
  entry,
  isUnfinished,
  movesTenant,
  queueShardsOf,
  takesFrom,
  type Migration,
  type ShardMap,
} from "@codeq/shardmap";
import { label } from "./own-route";
import { addCounts, emptyQueueCounts, liveTasks } from "./queue-counts";

/**
 * One side of migration `m` on `shard`, from its queues (or why they could not be read),
 * judged under `maps` (the map before counting and after): `counts` and `tenants` cover
 * the queues the move moves now (`movesTenant`), `unrouted` every tenant's queue of the
 * command on the shard that none of the maps reads there (a task a command-wide move
 * left behind for a tenant overridden since is as lost as any other).
 */
export function migrationSide(
  maps: readonly ShardMap[],
  m: Migration,
  shard: string,
  queues: internal.QueueSummary[] | string,
): MigrationSide {
  const reads = (tenant: string) =>
    maps.some((map) => queueShardsOf(map, m.command, tenant).includes(shard));
  const side: MigrationSide = {
    shard,
    answered: typeof queues !== "string",
    error: typeof queues === "string" ? queues : "",
    counts: emptyQueueCounts(),
    moving: 0,
    routed: reads(m.tenant ?? ""),
    unrouted: 0,
    tenants: 0,
  };
  if (typeof queues === "string") return side;
  const now = maps[maps.length - 1]!;
  for (const q of queues) {
    if (!q.counts) continue;
    const held = liveTasks(q.counts) + q.moving;
    if (!reads(q.tenant)) side.unrouted += held;
    if (!movesTenant(now, m, q.tenant)) continue;
    addCounts(side.counts!, q.counts);
    side.moving += q.moving;
    if (held > 0) side.tenants++;
  }
  return side;
}

/**
 * What is wrong with one side of a verified migration, one sentence each; `maps` are
 * the map before counting and after it (`map`, the last).
 */
export function sideProblems(
  maps: readonly ShardMap[],
  m: Migration,
  side: MigrationSide,
): string[] {
  const map = maps[maps.length - 1]!;
  if (!side.answered)
    // a shard removed from the map was asked, then, whether it held anything
    return entry(map.shards, side.shard) === undefined
      ? []
      : [`shard ${side.shard} did not answer (${side.error}); verify again once it does`];
  const problems: string[] = [];
  // a move that is over leaves nothing reserved, unless a source's map lagged behind
  // its abort (its mover puts that back once it sees the move gone) or another move of
  // the command that takes from that shard, in either map, reserved it
  const otherMove = maps.some((x) =>
    x.migrations.some(
      (o) =>
        o.id !== m.id && isUnfinished(o) && o.command === m.command && takesFrom(o, side.shard),
    ),
  );
  if (!isUnfinished(m) && side.moving > 0 && !otherMove)
    problems.push(
      `shard ${side.shard} holds ${side.moving} tasks of ${label(m.command, m.tenant)} reserved for this move, which is over, so no worker receives them; its mover puts them back once the map it holds shows the move over, and a restarted worker does for its ten newest aborted moves; should they stay, assigning the queue away from ${side.shard} moves them`,
    );
  if (side.unrouted > 0)
    problems.push(
      `shard ${side.shard} holds ${side.unrouted} ready, scheduled, leased, dead or reserved tasks of ${label(m.command, m.tenant)} where no router reads them under map version ${map.version}, so no worker receives them; they are kept, and assigning the queue to ${side.shard} and then back brings them into routing`,
    );
  return problems;
}
