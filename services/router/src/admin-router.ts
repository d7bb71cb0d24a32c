import { ServerError, Status, type CallContext } from "nice-grpc";
import { BreakerState, type AdminServiceImplementation, type ShardStatus } from "@codeq/proto";
import { requireRole } from "@codeq/server-kit";
import type { MapSource, MigrationStore } from "@codeq/shardmap";
import { mapToWire, shardState } from "./admin-wire";
import { tenantList } from "./config";
import { MapOperations } from "./map-operations";
import { asServerError } from "./fan-out";
import type { Routing } from "./routing";
import type { BreakerState as PoolBreakerState } from "./shard-pool";

const BREAKER: Record<PoolBreakerState, BreakerState> = {
  closed: BreakerState.BREAKER_STATE_CLOSED,
  "half-open": BreakerState.BREAKER_STATE_HALF_OPEN,
  open: BreakerState.BREAKER_STATE_OPEN,
};

/** codeq.v1.AdminService on the router: the map, the shards, assignments and migrations. */
export function adminRouter(
  routing: Routing,
  source: MapSource,
  store: MigrationStore | undefined,
): AdminServiceImplementation {
  const operators = new Set(tenantList(routing.config.adminTenants));
  const admin = async (ctx: CallContext, what: string) => {
    const f = await routing.forward(ctx);
    requireRole(f.identity, "admin", what);
    if (operators.size > 0 && !operators.has(f.identity.tenant))
      throw new ServerError(
        Status.PERMISSION_DENIED,
        `${what} is open to the admins of ${[...operators].join(", ")} only (CODEQ_ROUTER_ADMIN_TENANTS); the caller is an admin of ${f.identity.tenant}, which serves its own dead-letter queues only`,
      );
    return f;
  };
  const ops = new MapOperations(routing, source, store);

  return {
    async getShardMap(_req, ctx) {
      await admin(ctx, "GetShardMap");
      const status = routing.cache.status();
      return {
        map: mapToWire(routing.map),
        stale: status.stale,
        loadedAtMs: status.loadedAtMs,
      };
    },

    async listShards(_req, ctx) {
      await admin(ctx, "ListShards");
      return { shards: await listShards(routing) };
    },

    async assignCommand(req, ctx) {
      const f = await admin(ctx, "AssignCommand");
      return ops.assign(req, f.identity.principal, ctx.signal);
    },

    async getMigration(req, ctx) {
      await admin(ctx, "GetMigration");
      return { migration: await ops.migration(req.id) };
    },

    async listMigrations(req, ctx) {
      await admin(ctx, "ListMigrations");
      return ops.listMigrations(req);
    },

    async abortMigration(req, ctx) {
      const f = await admin(ctx, "AbortMigration");
      return { migration: await ops.abort(req.id, f.identity.principal, ctx.signal) };
    },

    async verifyMigration(req, ctx) {
      await admin(ctx, "VerifyMigration");
      return ops.verify(req.id, ctx.signal);
    },

    async registerShard(req, ctx) {
      const f = await admin(ctx, "RegisterShard");
      return { mapVersion: await ops.registerShard(req.shard, f.identity.principal) };
    },

    async removeShard(req, ctx) {
      const f = await admin(ctx, "RemoveShard");
      return { mapVersion: await ops.removeShard(req, f.identity.principal) };
    },

    async setDefaultShard(req, ctx) {
      const f = await admin(ctx, "SetDefaultShard");
      return ops.setDefaultShard(req, f.identity.principal, ctx.signal);
    },

    async setShardState(req, ctx) {
      const f = await admin(ctx, "SetShardState");
      return { mapVersion: await ops.setShardState(req.id, req.state, f.identity.principal) };
    },

    async listAuditEvents(req, ctx) {
      await admin(ctx, "ListAuditEvents");
      return ops.audit(req.pageSize, req.pageToken);
    },
  };
}

/** Every shard of the map with its health, depth, map version and the router's breaker. */
async function listShards(routing: Routing): Promise<ShardStatus[]> {
  const map = routing.map;
  const deadline = new Date(Date.now() + routing.config.fanoutTimeoutMs);
  return Promise.all(
    Object.entries(map.shards)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(async ([id, info]): Promise<ShardStatus> => {
        const conn = routing.pool.get(id);
        const shard = { id, endpoint: info.endpoint, state: shardState(info.state) };
        const breaker = BREAKER[conn.breakerState];
        try {
          // asked directly, not through the breaker: an operator wants the truth now. The
          // health apart from the depth (a stats read per queue): a shard of very many
          // queues, or a slow store, is not called unhealthy for a depth read past the deadline
          const [s, depth] = await Promise.all([
            conn.internal.getShardStatus({ withoutDepth: true }, { deadline }),
            conn.internal.getShardStatus({}, { deadline }).then(
              (d) => (d.storeReachable ? d.queueDepth : undefined),
              () => undefined,
            ),
          ]);
          // a worker of another id at this endpoint (a mistyped registration) is not this shard
          const itself = s.shard === id;
          const serving = itself && s.storeReachable && s.lifecycle === "serving";
          return {
            shard,
            healthy: serving,
            breaker,
            queueDepth: depth ?? 0,
            mapVersion: s.mapVersion,
            error: !itself
              ? `the worker at ${info.endpoint} is shard ${JSON.stringify(s.shard)}, not ${JSON.stringify(id)}`
              : !serving
                ? `store reachable: ${s.storeReachable}, ${s.lifecycle}`
                : depth === undefined
                  ? `its queue depth was not read within ${routing.config.fanoutTimeoutMs} ms (shown as 0)`
                  : "",
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
}
