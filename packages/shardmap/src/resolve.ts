/**
 * Resolution of a queue to shards: pure functions of a map, table-tested.
 * The current shard is the tenant override, else the command mapping, else the
 * default shard. A migration of a whole command applies to every tenant of it that
 * has no override of its own; a migration of one tenant's queue applies to that
 * queue. Each unfinished migration that applies contributes the shard it moves
 * tasks off (the source; the target while aborting) ahead of the shard it moves
 * them onto, and both come before the current shard, so workers drain old shards
 * first; among the shards moved off, those in state `draining` come first. While a
 * change of the default shard is being finished, a queue that follows the default is
 * read on the former default too, first (it may hold tasks taken as the change spread).
 */
import { tenantKey } from "./names";
import {
  drainingSide,
  entry,
  fillingSide,
  isUnfinished,
  type Migration,
  type RoutingTable,
} from "./shard-map";

/** Which rule chose the current shard. */
export type ResolvedBy = "tenant" | "command" | "default";

export interface Resolution {
  readonly currentShard: string;
  readonly queueShards: string[];
  readonly by: ResolvedBy;
  /** The unfinished migrations that apply to the queue. */
  readonly migrations: readonly Migration[];
}

/**
 * Where new enqueues of (command, tenant) go, and why. Without a tenant: where the
 * command goes for every tenant without an override of its own.
 */
export function resolveCurrent(
  map: RoutingTable,
  command: string,
  tenant?: string,
): { shard: string; by: ResolvedBy } {
  const override =
    tenant === undefined ? undefined : entry(map.tenants, tenantKey(command, tenant));
  if (override !== undefined) return { shard: override, by: "tenant" };
  const mapped = entry(map.commands, command);
  if (mapped !== undefined) return { shard: mapped, by: "command" };
  return { shard: map.defaultShard, by: "default" };
}

/**
 * Whether migration `m` (or a move asked for, as AssignCommand names it) moves
 * `tenant`'s queue of its command: a tenant's move only that tenant's; a command's move
 * every tenant without an override of its own (one with an override is routed
 * elsewhere).
 */
export function movesTenant(
  map: RoutingTable,
  m: Pick<Migration, "command" | "tenant">,
  tenant: string,
): boolean {
  return m.tenant === undefined
    ? entry(map.tenants, tenantKey(m.command, tenant)) === undefined
    : m.tenant === tenant;
}

/** The unfinished migrations that move tasks of (command, tenant). */
export function applicableMigrations(
  map: RoutingTable,
  command: string,
  tenant: string,
): Migration[] {
  const migrations = map.migrations ?? [];
  if (migrations.length === 0) return [];
  return migrations.filter(
    (m) => isUnfinished(m) && m.command === command && movesTenant(map, m, tenant),
  );
}

/** The unfinished migration moving tasks of (command, tenant) onto `shard`, if any. */
export function fillingMigration(
  map: RoutingTable,
  command: string,
  tenant: string,
  shard: string,
): Migration | undefined {
  return applicableMigrations(map, command, tenant).find((m) => fillingSide(m) === shard);
}

/** The current shard and every shard that may hold tasks of (command, tenant). */
export function resolveQueue(map: RoutingTable, command: string, tenant: string): Resolution {
  const { shard, by } = resolveCurrent(map, command, tenant);
  const migrations = applicableMigrations(map, command, tenant);
  const former = by === "default" ? formerDefaultOf(map) : undefined;
  if (migrations.length === 0)
    return { currentShard: shard, queueShards: former ? [former, shard] : [shard], by, migrations };
  const drained = migrations.map(drainingSide);
  const isDraining = (id: string) => entry(map.shards, id)?.state === "draining";
  const ordered = [
    ...(former ? [former] : []),
    ...drained.filter(isDraining),
    ...drained.filter((id) => !isDraining(id)),
    ...migrations.map(fillingSide),
    shard,
  ];
  return { currentShard: shard, queueShards: [...new Set(ordered)], by, migrations };
}

/** The former default shard, while a change of the default is being finished. */
function formerDefaultOf(map: RoutingTable): string | undefined {
  const former = map.formerDefault;
  // (one a writer that predates the field left naming the default, or a removed shard)
  return former !== undefined && former !== map.defaultShard && entry(map.shards, former)
    ? former
    : undefined;
}

/** Where new enqueues of (command, tenant) go; without a tenant, those of the command's tenants without an override. */
export function currentShardOf(map: RoutingTable, command: string, tenant?: string): string {
  return resolveCurrent(map, command, tenant).shard;
}

/** Every shard that may hold tasks of (command, tenant), the ones being drained first. */
export function queueShardsOf(map: RoutingTable, command: string, tenant: string): string[] {
  return resolveQueue(map, command, tenant).queueShards;
}

/**
 * Every shard that may hold tasks of `command` for any tenant (what a cross-tenant
 * worker leases from): the command's shard, every tenant override of it, and both
 * sides of its unfinished migrations, the shards being drained first.
 */
export function commandShardsOf(map: RoutingTable, command: string): string[] {
  const prefix = `${command}/`;
  const overrides = Object.entries(map.tenants)
    .filter(([key]) => key.startsWith(prefix))
    .map(([, shard]) => shard);
  const migrations = (map.migrations ?? []).filter((m) => isUnfinished(m) && m.command === command);
  const former = entry(map.commands, command) === undefined ? formerDefaultOf(map) : undefined;
  const ordered = [
    ...(former ? [former] : []),
    ...migrations.map(drainingSide),
    ...migrations.map(fillingSide),
    currentShardOf(map, command),
    ...overrides,
  ];
  return [...new Set(ordered)];
}
