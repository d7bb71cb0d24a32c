import { ServerError, Status } from "nice-grpc";
import {
  BreakerState,
  MigrationState,
  ShardState,
  type AdminServiceImplementation,
  type Migration as WireMigration,
  type ShardMap as WireShardMap,
  type ShardStatus,
} from "@codeq/proto";
import { requireRole } from "@codeq/server-kit";
import type { Migration, ShardMap } from "@codeq/shardmap";
import { asServerError } from "./fan-out";
import type { Routing } from "./routing";
import type { BreakerState as PoolBreakerState } from "./shard-pool";

const BREAKER: Record<PoolBreakerState, BreakerState> = {
  closed: BreakerState.BREAKER_STATE_CLOSED,
  "half-open": BreakerState.BREAKER_STATE_HALF_OPEN,
  open: BreakerState.BREAKER_STATE_OPEN,
};

const MIGRATION: Record<Migration["state"], MigrationState> = {
  copying: MigrationState.MIGRATION_STATE_COPYING,
  draining: MigrationState.MIGRATION_STATE_DRAINING,
  completed: MigrationState.MIGRATION_STATE_COMPLETED,
  aborting: MigrationState.MIGRATION_STATE_ABORTING,
  aborted: MigrationState.MIGRATION_STATE_ABORTED,
};

const shardState = (s: string) =>
  s === "draining" ? ShardState.SHARD_STATE_DRAINING : ShardState.SHARD_STATE_ACTIVE;

function migrationToWire(m: Migration): WireMigration {
  return {
    id: m.id,
    command: m.command,
    tenant: m.tenant ?? "",
    fromShard: m.from,
    toShard: m.to,
    state: MIGRATION[m.state],
    moved: undefined,
    remaining: undefined,
    startedAtMs: m.startedAtMs,
    updatedAtMs: m.updatedAtMs ?? m.startedAtMs,
    finishedAtMs: m.finishedAtMs ?? 0,
    ratePerSecond: 0,
    mapVersion: m.mapVersion ?? 0,
    requestedBy: m.requestedBy ?? "",
    lastError: m.lastError ?? "",
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
    migrations: map.migrations.map(migrationToWire),
    updatedAtMs: map.updatedAtMs,
  };
}

const later = (what: string) => async (): Promise<never> => {
  throw new ServerError(Status.UNIMPLEMENTED, `${what} arrives with command migration (issue 6)`);
};

/** codeq.v1.AdminService on the router: the map it holds, and the shards' health. */
export function adminRouter(routing: Routing): AdminServiceImplementation {
  const admin = (ctx: Parameters<AdminServiceImplementation["getShardMap"]>[1], what: string) =>
    requireRole(routing.forward(ctx).identity, "admin", what);

  return {
    async getShardMap(_req, ctx) {
      admin(ctx, "GetShardMap");
      const status = routing.cache.status();
      return {
        map: mapToWire(routing.map),
        stale: status.stale,
        loadedAtMs: status.loadedAtMs,
      };
    },

    async listShards(_req, ctx) {
      admin(ctx, "ListShards");
      const map = routing.map;
      const deadline = new Date(Date.now() + routing.config.fanoutTimeoutMs);
      const shards = await Promise.all(
        Object.entries(map.shards)
          .sort(([a], [b]) => a.localeCompare(b))
          .map(async ([id, info]): Promise<ShardStatus> => {
            const conn = routing.pool.get(id);
            const shard = { id, endpoint: info.endpoint, state: shardState(info.state) };
            const breaker = BREAKER[conn.breakerState];
            try {
              // asked directly, not through the breaker: an operator wants the truth now
              const s = await conn.internal.getShardStatus({}, { deadline });
              const serving = s.storeReachable && s.lifecycle === "serving";
              return {
                shard,
                healthy: serving,
                breaker,
                queueDepth: s.queueDepth,
                mapVersion: s.mapVersion,
                error: serving ? "" : `store reachable: ${s.storeReachable}, ${s.lifecycle}`,
              };
            } catch (err) {
              const e = conn.toServerError(err);
              return {
                shard,
                healthy: false,
                breaker,
                queueDepth: 0,
                mapVersion: 0,
                error: asServerError(e).details,
              };
            }
          }),
      );
      return { shards };
    },

    assignCommand: later("AssignCommand"),
    getMigration: later("GetMigration"),
    listMigrations: later("ListMigrations"),
    abortMigration: later("AbortMigration"),
    registerShard: later("RegisterShard"),
    removeShard: later("RemoveShard"),
    listAuditEvents: later("ListAuditEvents"),
  };
}
