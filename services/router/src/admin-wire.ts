import {
  MigrationState,
  ShardState,
  type Migration as WireMigration,
  type ShardMap as WireShardMap,
} from "@codeq/proto";
import type { Migration, MigrationCounts, MigrationProgress, ShardMap } from "@codeq/shardmap";

/** The shard map and migrations in their codeq.v1 wire form. */

const MIGRATION: Record<Migration["state"], MigrationState> = {
  copying: MigrationState.MIGRATION_STATE_COPYING,
  draining: MigrationState.MIGRATION_STATE_DRAINING,
  completed: MigrationState.MIGRATION_STATE_COMPLETED,
  aborting: MigrationState.MIGRATION_STATE_ABORTING,
  aborted: MigrationState.MIGRATION_STATE_ABORTED,
  abandoned: MigrationState.MIGRATION_STATE_ABANDONED,
};

export const shardState = (s: string) =>
  s === "draining" ? ShardState.SHARD_STATE_DRAINING : ShardState.SHARD_STATE_ACTIVE;

const countsToWire = (c: MigrationCounts | undefined) =>
  c && {
    ready: c.ready,
    scheduled: c.scheduled,
    dead: c.dead,
    leased: c.leased,
    idempotencyKeys: c.idempotencyKeys,
  };

export function migrationToWire(m: Migration, progress?: MigrationProgress): WireMigration {
  return {
    id: m.id,
    command: m.command,
    tenant: m.tenant ?? "",
    fromShard: m.from,
    toShard: m.to,
    state: MIGRATION[m.state],
    moved: countsToWire(progress?.moved),
    remaining: countsToWire(progress?.remaining),
    startedAtMs: m.startedAtMs,
    updatedAtMs: m.updatedAtMs ?? m.startedAtMs,
    finishedAtMs: m.finishedAtMs ?? 0,
    ratePerSecond: progress?.ratePerSecond ?? 0,
    mapVersion: m.mapVersion ?? 0,
    requestedBy: m.requestedBy ?? "",
    lastError: progress?.lastError ?? m.lastError ?? "",
    lostShard: m.lostShard ?? "",
  };
}

/** The shard map in its wire form (assignments sorted: command mappings, then overrides). */
export function mapToWire(map: ShardMap): WireShardMap {
  const assignments = [
    ...Object.entries(map.commands).map(([command, shard]) => ({ command, tenant: "", shard })),
    ...Object.entries(map.tenants).map(([key, shard]) => {
      const slash = key.indexOf("/");
      return { command: key.slice(0, slash), tenant: key.slice(slash + 1), shard };
    }),
  ].sort((a, b) => a.command.localeCompare(b.command) || a.tenant.localeCompare(b.tenant));
  return {
    version: map.version,
    shards: Object.entries(map.shards)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([id, s]) => ({ id, endpoint: s.endpoint, state: shardState(s.state) })),
    defaultShard: map.defaultShard,
    assignments,
    migrations: map.migrations.map((m) => migrationToWire(m)),
    updatedAtMs: map.updatedAtMs,
    formerDefault: map.formerDefault ?? "",
  };
}
