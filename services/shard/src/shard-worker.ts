import { Redis } from "ioredis";
import { QueueEngine, type QueueRef } from "@codeq/engine";
import { messageOf, redisTls } from "@codeq/common";
import { fillingMigration, MigrationStore } from "@codeq/shardmap";
import { internal, QueueServiceDefinition } from "@codeq/proto";
import type { MapCache } from "@codeq/shardmap";
import {
  createLogger,
  Lifecycle,
  cleanUpOnFailure,
  followMapHealth,
  LoadGauge,
  rejectBadRequests,
  serverTlsOf,
  startGrpcService,
  type GrpcService,
  type Logger,
  type MetricsServer,
} from "@codeq/server-kit";
import { BackgroundWork } from "./background";
import { DefaultChangeFinisher } from "./default-finish";
import { configWarnings, identityOptions, moveBatchBytes, type ShardConfig } from "./config";
import { followShardMap } from "./map-follower";
import { commandsHeld, Metrics } from "./metrics";
import { Mover } from "./mover";
import { MovingKeys } from "./moving-keys";
import { PeerShards } from "./peers";
import { Notifier } from "./notifier";
import { QueueCore } from "./queue-core";
import { queueService, ShardQueueService } from "./queue-service";
import { shardService } from "./shard-service";

/** A running shard worker. */
export interface ShardWorker {
  readonly port: number;
  /** Port of the Prometheus endpoint (undefined when disabled). */
  readonly metricsPort: number | undefined;
  readonly grpc: GrpcService;
  readonly engine: QueueEngine;
  readonly notifier: Notifier;
  readonly metrics: Metrics;
  /** The shard map followed (undefined for a standalone shard, without `controlUrl`). */
  readonly map: MapCache | undefined;
  /** The shard map version held; 0 for a standalone shard. */
  mapVersion(): number;
  /**
   * Graceful shutdown: health NOT_SERVING, streams drain (nothing more is pushed;
   * each ends, UNAVAILABLE, once what it holds is settled or its share of the grace
   * period is over, releasing what is left), long polls answer, in-flight calls finish
   * within the grace period, background loops stop, then the store connection closes.
   */
  stop(): Promise<void>;
}

/**
 * Starts a shard worker serving codeq.v1.QueueService (and the internal
 * codeq.internal.v1.ShardService) on its own store. With `controlUrl` it first
 * waits for the shard map and then refuses enqueues for queues it does not own.
 */
export async function startShardWorker(
  config: ShardConfig,
  logger: Logger = createLogger(`shard-${config.id}`),
): Promise<ShardWorker> {
  const trust = identityOptions(config); // a bad secret file stops the start here
  if (!trust.routerSecret && !trust.trustedTransport && !config.devIdentity)
    logger.warn(
      "no router secret, no mutual TLS and no development identity: every call will be refused, ShardService's too (set CODEQ_SHARD_ROUTER_SECRET_FILE)",
    );
  for (const warning of configWarnings(config)) logger.warn(warning);
  if (config.devIdentity) {
    logger.warn(
      "DEVELOPMENT IDENTITY IS ON: any caller may state its tenant in x-codeq-tenant. Never run this in production.",
    );
  }
  // read before anything is opened: an unreadable CA file leaves nothing running
  const storeTls = redisTls(config.redisUrl, config.redisTlsCaFile);
  // the map and the migration records: one control store, reached alike
  const controlTls = redisTls(config.controlUrl, config.controlTlsCaFile);
  const follower = config.controlUrl ? await followShardMap(config, logger, controlTls) : undefined;
  const mapVersion = () => follower?.cache.status().version ?? 0;
  const redis = new Redis(config.redisUrl, {
    ...storeTls,
    protocol: 2,
    lazyConnect: true,
    maxRetriesPerRequest: 2,
    // a disconnect gives a socket that does not close this long before destroying it
    // (ioredis: 2 s, armed even for a socket already gone, which held a failed start)
    disconnectTimeout: 500,
    socketTimeout: config.storeSocketTimeoutMs,
  });
  redis.on("error", (err) => logger.warn({ err: err.message }, "store connection error"));
  const notifier = new Notifier();
  // a start that fails here (no store, or its scripts refused) leaves nothing open
  const engine = await cleanUpOnFailure(
    async () => {
      await reachStore(redis, config, logger);
      return QueueEngine.open(redis, {
        shard: config.id,
        keyPrefix: config.keyPrefix,
        layout: config.keyLayout,
        idempotencyWindowMs: config.idempotencyWindowMs,
        completedRetentionMs: config.completedRetentionMs,
        deadRetentionMs: config.deadRetentionMs,
        limits: { payloadCapBytes: config.payloadCapBytes },
        // tasks a lease call took but never delivered (a reconnect lost its reply) are ready again
        // (or that did not fit in one answer: ready again, not worth a warning)
        onLeasesGivenBack: (queue, n, reason) => {
          if (reason === "lost reply")
            logger.warn({ ...queue, tasks: n }, "gave back leases whose reply a reconnect lost");
          metrics.givenBack.inc(n); // (leases happen only once the worker, metrics included, runs)
          notifier.notify(queue, n);
        },
        onGiveBackFailed: (err) =>
          logger.warn({ err: messageOf(err) }, "giving back leases failed; trying again"),
        // a lease promoted due tasks before the due loop did, or stopped at its byte bound
        // with tasks left: their waiters hear it here
        onTasksLeftReady: (queue, n) => notifier.notify(queue, n),
      });
    },
    async () => {
      redis.disconnect();
      await follower?.stop();
    },
  );
  const load = new LoadGauge();
  const busy = () => load.busy();
  const metrics = new Metrics(config.id, engine, logger, config.depthScrapeTimeoutMs);
  metrics.followLoad(busy);
  if (follower) metrics.followMap(() => follower.cache.status());
  const background = new BackgroundWork(engine, notifier, config, metrics, logger);
  // the other shard workers, as the mover and idempotency keys during a move call them
  const peers = new PeerShards({
    // during a rotation the previous secret, which every worker accepts until its end
    // (those not rolled yet hold it as their only one)
    routerSecret: trust.previousRouterSecret ?? trust.routerSecret,
    tls: config.tlsCaFile
      ? { caFile: config.tlsCaFile, certFile: config.tlsCertFile, keyFile: config.tlsKeyFile }
      : undefined,
  });
  const movingKeys = follower
    ? new MovingKeys(config.id, follower.cache, engine, peers, {
        timeoutMs: KEY_LOOKUP_TIMEOUT_MS,
        onUnchecked: (queue, keys, from, err) => {
          metrics.keysUnchecked.inc(keys);
          logger.warn(
            { ...queue, keys, from, err },
            "idempotency keys stored unchecked: the shard the queue is moving from did not answer",
          );
        },
      })
    : undefined;
  const core = new QueueCore(
    engine,
    notifier,
    background,
    metrics,
    config,
    follower?.fence,
    movingKeys,
  );
  const lifecycle = new Lifecycle();
  let storeReachable = false;
  const view = {
    shard: config.id,
    // the last ping answered, and the connection has not dropped since (a command sent
    // while it is down waits out its reconnects: seconds)
    storeReachable: () => storeReachable && redis.status === "ready",
    mapVersion,
    busy,
    storesSettled: (signal?: AbortSignal) => follower?.fence.settled(signal) ?? Promise.resolve(),
    storeAdmitted: () => {
      const fence = follower?.fence;
      if (!fence) return () => undefined;
      const generation = fence.counted();
      return () => fence.ended(generation);
    },
    receives: (id: string, queue: QueueRef) => {
      if (!follower) return true;
      const map = follower.cache.version > 0 ? follower.cache.current() : undefined;
      return (
        map !== undefined &&
        fillingMigration(map, queue.command, queue.tenant, config.id)?.id === id
      );
    },
  };
  /** What the worker opened before it serves: the map follower, the store, the load gauge. */
  const closeStore = async () => {
    await follower?.stop();
    await redis.quit().catch(() => redis.disconnect());
    load.stop();
  };
  // a start that fails (the address taken, say) leaves nothing running behind it
  const grpc = await cleanUpOnFailure(
    () =>
      startGrpcService({
        listen: config.listen,
        maxMessageBytes: config.maxMessageBytes,
        keepaliveMs: config.keepaliveMs,
        tls: serverTlsOf(config.tlsCertFile, config.tlsKeyFile, config.tlsCaFile),
        logger,
        lifecycle,
        // undecodable requests are INVALID_ARGUMENT; the router's lane (Forward) answers
        // its calls' undecodable bytes itself, and its messages are not looked into
        middleware: [
          metrics.rpc.middleware(),
          rejectBadRequests((path) => path.startsWith(`/${QueueServiceDefinition.fullName}/`)),
        ],
        register(server) {
          server.add(ShardQueueService, queueService(core, lifecycle));
          server.add(
            internal.ShardServiceDefinition,
            shardService(
              view,
              core,
              metrics,
              lifecycle,
              (queue, ready, scheduled) => {
                if (ready > 0) notifier.notify(queue, ready);
                if (scheduled > 0) background.recheck();
              },
              trust,
            ),
          );
          return [QueueServiceDefinition.fullName, internal.ShardServiceDefinition.fullName];
        },
      }),
    closeStore,
  );
  background.start();
  const migrations = follower
    ? new MigrationStore(config.controlUrl, config.controlPrefix, controlTls)
    : undefined;
  const mover =
    follower && migrations && config.mover
      ? new Mover(
          config.id,
          engine,
          follower.cache,
          follower.source,
          migrations,
          logger,
          {
            batch: config.moverBatch,
            batchBytes: moveBatchBytes(config),
            intervalMs: config.moverIntervalMs,
            dutyPercent: config.moverDutyPercent,
            yieldAbove: config.moverYieldAbovePercent / 100,
            busy,
            onYield: (ms) => metrics.moverYield.inc(ms / 1000),
            importTimeoutMs: PEER_TIMEOUT_MS,
            peers,
            storesSettled: (signal) => follower.fence.settled(signal),
          },
          // a batch put back may hold scheduled tasks due before the due loop wakes
          (queue, n) => {
            notifier.notify(queue, n);
            background.recheck();
          },
        )
      : undefined;
  const stopMover = mover?.start();
  const finisher = follower
    ? new DefaultChangeFinisher({
        shard: config.id,
        cache: follower.cache,
        source: follower.source,
        fence: follower.fence,
        commandsHeld: async () => commandsHeld(await metrics.depthByCommand(true)),
        logger,
        afterMs: config.defaultFinishAfterMs,
      })
    : undefined;
  const stopFinisher = finisher?.start();
  let metricsServer: MetricsServer | undefined;
  /**
   * Stops serving (in-flight calls get `graceMs`), then everything the worker runs,
   * within the grace period (at least AFTER_GRACE_MS after serving stops): a store
   * that does not answer (its host gone, packets dropped; ioredis sets no time limit
   * on a command) would hold up a background pass, the mover or QUIT for good, so
   * past it the store connection is cut, which fails what waits on it.
   */
  const release = async (graceMs: number) => {
    const by = Date.now() + graceMs;
    const shutdown = grpc.shutdown(graceMs); // health NOT_SERVING at once
    stopMover?.();
    stopFinisher?.();
    const moverStopped = Promise.all([mover?.stop(), finisher?.stop()]);
    moverStopped.catch(() => undefined); // awaited below (`rest`), after the grace period
    await shutdown;
    core.stopRetries();
    const rest = (async () => {
      // side by side: a mover's stop that waits (on the control store, say) does not
      // keep the due and cleanup loops running against a store that is being closed
      await Promise.all([moverStopped, background.stop()]);
      await migrations?.close();
      peers.close();
      await metricsServer?.close();
      await closeStore();
    })();
    if (await settlesWithin(rest, Math.max(AFTER_GRACE_MS, by - Date.now()))) return rest;
    logger.warn(
      { shard: config.id },
      "the store did not answer while the worker stopped: its connection is cut",
    );
    redis.disconnect();
    if (await settlesWithin(rest, AFTER_GRACE_MS)) return rest;
    // still waiting (on the control store, say): left to the end of the process
    rest.catch(() => undefined);
  };
  if (config.metricsListen)
    metricsServer = await cleanUpOnFailure(
      () => metrics.serve(config.metricsListen),
      () => release(0),
    );

  const reachable = (ok: boolean) => {
    storeReachable = ok;
    metrics.available.set({ shard: config.id }, ok ? 1 : 0);
    // a ping answered once the drain began does not make the worker SERVING again
    if (lifecycle.state === "serving") grpc.setServing(ok);
  };
  // one ping at a time: while the store is down a ping waits out its reconnects
  // (seconds), longer than the check period. A ping unanswered for a whole period
  // says the store is unreachable meanwhile: a store that stalls, or whose host drops
  // packets without closing the connection, leaves it unanswered for as long (ioredis
  // sets no time limit on a command; TCP gives up after many minutes).
  let pingSentAt: number | undefined;
  const checkStore = async () => {
    follower?.checkStale();
    if (lifecycle.state !== "serving") return;
    if (pingSentAt !== undefined) {
      if (Date.now() - pingSentAt >= config.storeCheckMs) reachable(false);
      return;
    }
    pingSentAt = Date.now();
    const ok = await redis
      .ping()
      .then(
        () => true,
        () => false,
      )
      .finally(() => (pingSentAt = undefined));
    reachable(ok);
  };
  await checkStore();
  const storeTimer = setInterval(() => void checkStore(), config.storeCheckMs);
  storeTimer.unref();
  // health says whether the map followed is confirmed (SPEC: stale, said in health too)
  const stopMapHealth = follower
    ? followMapHealth(grpc.health, () => follower.cache.status().stale, config.storeCheckMs)
    : undefined;
  logger.info(
    {
      shard: config.id,
      port: grpc.port,
      metricsPort: metricsServer?.port,
      mapVersion: mapVersion(),
    },
    "shard worker ready",
  );

  let stopping: Promise<void> | undefined;
  return {
    port: grpc.port,
    metricsPort: metricsServer?.port,
    grpc,
    engine,
    notifier,
    metrics,
    map: follower?.cache,
    mapVersion,
    stop() {
      stopping ??= (async () => {
        clearInterval(storeTimer);
        stopMapHealth?.();
        await release(config.graceMs);
      })();
      return stopping;
    },
  };
}

/** How long stopping may take past serving's end, at least (`release`), ms. */
const AFTER_GRACE_MS = 1_000;

/** Deadline of the mover's calls to another shard worker (ImportTasks), ms. */
const PEER_TIMEOUT_MS = 10_000;
/**
 * Deadline of an enqueue's question to the shard its queue is moving from (MovingKeys),
 * ms: the enqueue waits for it.
 */
const KEY_LOOKUP_TIMEOUT_MS = 2_000;

/**
 * Connects to the store, waiting up to `storeStartTimeoutMs` for it to answer (ioredis
 * retries on its own after a refused connection); refused credentials end the wait at
 * once. An error names the store, its password hidden.
 */
async function reachStore(redis: Redis, config: ShardConfig, logger: Logger): Promise<void> {
  const store = withoutPassword(config.redisUrl);
  let last = "";
  let refuse: (err: Error) => void = () => undefined;
  const onError = (err: Error) => {
    last = err.message;
    // a password the store refuses: no retry makes it right
    if (/^(WRONGPASS|NOAUTH)\b/.test(err.message)) refuse(err);
  };
  redis.on("error", onError);
  const ready = new Promise<void>((resolve, reject) => {
    redis.once("ready", () => resolve());
    refuse = reject;
  });
  redis.connect().catch(() => undefined); // the first refusal: "ready" waits for a retry
  const waiting = setTimeout(
    () => logger.warn({ store }, "waiting for the store to answer"),
    Math.min(1_000, config.storeStartTimeoutMs),
  );
  try {
    if (!(await settlesWithin(ready, config.storeStartTimeoutMs)))
      throw new Error(
        `cannot reach the store at ${store} within ${config.storeStartTimeoutMs} ms (${last || "no answer"}): is it running, and is CODEQ_SHARD_REDIS_URL right?`,
      );
    await ready.catch((err: Error) => {
      throw new Error(
        `the store at ${store} refused the credentials (${err.message}): check the password in CODEQ_SHARD_REDIS_URL`,
      );
    });
  } finally {
    clearTimeout(waiting);
    redis.off("error", onError);
  }
}

/** `url` with its password, if any (user info or a `password` parameter), replaced by ***. */
export function withoutPassword(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    if (u.searchParams.has("password")) u.searchParams.set("password", "***");
    return u.toString();
  } catch {
    return "(the configured URL)";
  }
}

/** Whether `p` settles (either way) within `ms`. */
function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    const done = () => {
      clearTimeout(timer);
      resolve(true);
    };
    p.then(done, done);
  });
}
