import { ServerError, Status, type CallContext } from "nice-grpc";
import {
  NAME_PATTERN,
  type ExportedTask,
  type ImportOutcome,
  type QueueEngine,
  type QueueRef,
  type QueueStats,
} from "@codeq/engine";
import type { internal } from "@codeq/proto";
import { fromRouter, type IdentityOptions, type Lifecycle } from "@codeq/server-kit";
import { forward } from "./forward";
import { commandsHeld, STATS_CHUNK, storedOf, type Metrics } from "./metrics";
import type { QueueCore } from "./queue-core";
import { asServerErrors, invalid } from "./status";
import { countsToWire, exportedFromWire } from "@codeq/wire";

/** What GetShardStatus reports beyond the engine and metrics. */
export interface ShardView {
  readonly shard: string;
  /** The last store ping answered and the connection has not dropped since. */
  storeReachable(): boolean;
  /** The shard map version held; 0 for a standalone shard. */
  mapVersion(): number;
  /** How busy the worker's event loop is, 0–1 (a `LoadGauge`): ImportTasks reports it to the mover. */
  busy(): number;
  /** Resolves once every store admitted before the call has ended (ShardFence.settled). */
  storesSettled(signal?: AbortSignal): Promise<void>;
  /** Counts a store admitted now until the function returned is called (ShardFence.counted). */
  storeAdmitted(): () => void;
  /**
   * Whether migration `id` moves `queue` onto this shard in the map held: unfinished,
   * with this shard on its filling side. Always true for a shard that follows no map.
   */
  receives(id: string, queue: QueueRef): boolean;
}

/**
 * codeq.internal.v1.ShardService: the router → shard hop, the migration mover and
 * other shard workers. Only routers and shard workers are served: callers proven by
 * mutual TLS or presenting the router secret; with neither configured, anyone in
 * development identity and no one otherwise (`fromRouter`).
 */
export function shardService(
  view: ShardView,
  core: QueueCore,
  metrics: Metrics,
  lifecycle: Lifecycle,
  /** Tasks arrived by import: wake streams for the ready ones, the due loop for the scheduled. */
  onImported: (queue: QueueRef, ready: number, scheduled: number) => void = () => undefined,
  /** Who may call: with a router secret, only callers presenting it (routers, movers). */
  trust: IdentityOptions = { devIdentity: true },
): internal.ShardServiceImplementation {
  const engine = core.engine;
  return routersOnly(trust, {
    async importTasks(req) {
      const queue = namedQueue(req, "tasks", req.tasks.length);
      const tasks = req.tasks.map((t, i) => {
        const e = exportedFromWire(t, view.shard);
        if (!e) throw invalid(`tasks[${i}] has no task or no known state`);
        return e;
      });
      // a batch for a migration that is over (or no longer fills this shard) would stay
      // where no router reads; checked in the same turn as the import is sent, and
      // counted as a store admitted until it ends: a mover pass or HeldTasks that sees
      // the map change here waits for it (ShardFence.settled)
      if (
        (tasks.length > 0 || req.idempotencyKeys.length > 0) &&
        !view.receives(req.migrationId, queue)
      )
        throw new ServerError(
          Status.FAILED_PRECONDITION,
          `migration ${JSON.stringify(req.migrationId)} does not move ${req.command}/${req.tenant} onto shard ${view.shard} in the map it holds (version ${view.mapVersion()}): it is over, aborting, or not seen here yet; nothing was stored`,
        );
      const ended = view.storeAdmitted();
      const { out, keysBound } = await stored(engine, queue, tasks, req).finally(ended);
      const fresh = new Set(out.imported);
      let ready = 0;
      let scheduled = 0;
      for (const e of tasks) {
        if (!fresh.has(e.task.id)) continue;
        if (e.task.state === "READY") ready++;
        if (e.task.state === "SCHEDULED") scheduled++;
      }
      onImported(queue, ready, scheduled);
      return {
        imported: out.imported,
        alreadyPresent: out.alreadyPresent,
        keysBound,
        busy: view.busy(),
        placesReadyAtHead: true,
      };
    },

    async heldTasks(req, ctx) {
      const queue = namedQueue(req, "task_ids", req.taskIds.length);
      // no import of the migration is admitted after this turn; those admitted before
      // are waited for (see importTasks)
      if (view.receives(req.migrationId, queue))
        throw new ServerError(
          Status.FAILED_PRECONDITION,
          `migration ${JSON.stringify(req.migrationId)} still moves ${req.command}/${req.tenant} onto shard ${view.shard} in the map it holds (version ${view.mapVersion()}); ask again once the abort reaches it`,
        );
      await view.storesSettled(ctx.signal);
      return {
        held: await asServerErrors(() => engine.heldTasks(queue, req.taskIds, req.migrationId)),
      };
    },

    async lookupIdempotencyKeys(req, ctx) {
      const queue = namedQueue(req, "keys", req.keys.length);
      // a keyed enqueue admitted here before the queue moved away is stored first
      await view.storesSettled(ctx.signal);
      const found = await asServerErrors(() => engine.lookupIdempotencyKeys(queue, req.keys));
      return {
        bindings: found.map((b) => ({ key: b.key, taskId: b.taskId, expiresAtMs: b.expiresAt })),
      };
    },

    async listQueues(req) {
      if (!req.command) throw invalid("command is required");
      if (!NAME_PATTERN.test(req.command))
        throw invalid(`command must match ${NAME_PATTERN.source}`);
      const size = req.pageSize || 1000;
      if (size > 10_000) throw invalid(`page_size must be at most 10000, got ${req.pageSize}`);
      const after = req.pageToken ? tenantOfToken(req.pageToken) : undefined;
      return asServerErrors(async () => {
        // The registry is sorted by tenant; a page starts after the token's tenant.
        const all = (await engine.queues(req.command)).filter(
          (q) =>
            (after === undefined || q.tenant > after) && (!req.tenant || q.tenant === req.tenant),
        );
        const queues: internal.QueueSummary[] = [];
        let next = 0;
        // Queues that once held tasks but hold none now are left out.
        while (queues.length < size && next < all.length) {
          const chunk = all.slice(next, next + Math.min(STATS_CHUNK, size - queues.length));
          next += chunk.length;
          const stats = await Promise.all(chunk.map((q) => engine.stats(q)));
          stats.forEach((s, i) => {
            if (holdsTasks(s))
              queues.push({ tenant: chunk[i]!.tenant, counts: countsToWire(s), moving: s.moving });
          });
        }
        const last = all[next - 1];
        return {
          queues,
          nextPageToken: next < all.length && last ? tokenOfTenant(last.tenant) : "",
        };
      });
    },

    async getShardStatus(req, ctx) {
      // A status must answer while the store is down: that is when it matters most.
      // Once the store check has found it down, the depth is not read (its commands
      // would wait out their retries); a depth that fails to read is no depth either.
      // Asked without the depth, the store check's own answer is the reachability.
      const reachable = view.storeReachable();
      const depth =
        reachable && !req.withoutDepth
          ? await (
              req.fresh
                ? // a fresh read sees what every enqueue admitted before it stored
                  view.storesSettled(ctx.signal).then(() => metrics.depthByCommand(true))
                : metrics.depthByCommand()
            ).catch(() => undefined)
          : undefined;
      // what the shard holds of its queues' tasks: a batch a move reserved too (one an
      // abort left behind is still this shard's to hand on, and no router reads it)
      let queueDepth = 0;
      for (const d of depth?.values() ?? []) queueDepth += storedOf(d);
      const streams = await metrics.streamsOpen();
      return {
        shard: view.shard,
        storeReachable: req.withoutDepth ? reachable : depth !== undefined,
        mapVersion: view.mapVersion(),
        queueDepth,
        openStreams: streams,
        lifecycle: lifecycle.state,
        commands: depth ? commandsHeld(depth) : [],
        freshRead: req.fresh && depth !== undefined,
      };
    },

    async interruptLeaseStream(req) {
      const interrupt = core.interrupters.get(req.streamId);
      if (!interrupt)
        throw new ServerError(
          Status.NOT_FOUND,
          `no open LeaseStream ${req.streamId.slice(0, 100)}`,
        );
      return asServerErrors(async () => ({ released: await interrupt() }));
    },

    forward: (requests, ctx) => forward(core, trust, lifecycle.signal, requests, ctx),
  });
}

/** The queue a request names, checked, with at most 1000 `what` (INVALID_ARGUMENT otherwise). */
function namedQueue(req: QueueRef, what: string, n: number): QueueRef {
  if (!NAME_PATTERN.test(req.command)) throw invalid(`command must match ${NAME_PATTERN.source}`);
  if (!NAME_PATTERN.test(req.tenant)) throw invalid(`tenant must match ${NAME_PATTERN.source}`);
  if (n > 1000) throw invalid(`at most 1000 ${what} per call, got ${n}`);
  return { command: req.command, tenant: req.tenant };
}

function holdsTasks(s: QueueStats): boolean {
  return s.ready + s.scheduled + s.leased + s.dead + s.completed + s.moving > 0;
}

/** Page tokens are opaque to callers: the last tenant of the page, base64url. */
function tokenOfTenant(tenant: string): string {
  return Buffer.from(tenant, "utf8").toString("base64url");
}

function tenantOfToken(token: string): string {
  const tenant = Buffer.from(token, "base64url").toString("utf8");
  if (!NAME_PATTERN.test(tenant) || tokenOfTenant(tenant) !== token)
    throw invalid("page_token is not a token this call returned");
  return tenant;
}

/** Refuses every call from a caller that is not a router or a shard worker (`fromRouter`). */
function routersOnly(
  trust: IdentityOptions,
  impl: internal.ShardServiceImplementation,
): internal.ShardServiceImplementation {
  const admit = (ctx: CallContext) => {
    if (!fromRouter(ctx.metadata, trust))
      throw new ServerError(
        Status.UNAUTHENTICATED,
        "codeq.internal.v1.ShardService accepts only routers and shard workers (x-codeq-router-secret)",
      );
  };
  const guard =
    <Q, R>(fn: (req: Q, ctx: CallContext) => Promise<R>) =>
    (req: Q, ctx: CallContext): Promise<R> => {
      admit(ctx);
      return fn(req, ctx);
    };
  return {
    importTasks: guard(impl.importTasks.bind(impl)),
    listQueues: guard(impl.listQueues.bind(impl)),
    lookupIdempotencyKeys: guard(impl.lookupIdempotencyKeys.bind(impl)),
    heldTasks: guard(impl.heldTasks.bind(impl)),
    getShardStatus: guard(impl.getShardStatus.bind(impl)),
    interruptLeaseStream: guard(impl.interruptLeaseStream.bind(impl)),
    async *forward(requests, ctx) {
      admit(ctx);
      yield* impl.forward(requests, ctx);
    },
  };
}

/** Stores an ImportTasks request's tasks, then binds its idempotency keys. */
async function stored(
  engine: QueueEngine,
  queue: QueueRef,
  tasks: ExportedTask[],
  req: internal.ImportTasksRequest,
): Promise<{ out: ImportOutcome; keysBound: number }> {
  const out = await asServerErrors(() =>
    engine.importTasks(
      queue,
      tasks,
      req.migrationId || undefined,
      req.readyAtHead ? "head" : "tail",
    ),
  );
  const keysBound = req.idempotencyKeys.length
    ? await asServerErrors(() =>
        engine.bindIdempotencyKeys(
          queue,
          req.idempotencyKeys.map((k) => ({
            key: k.key,
            taskId: k.taskId,
            expiresAt: k.expiresAtMs,
          })),
        ),
      )
    : 0;
  return { out, keysBound };
}
