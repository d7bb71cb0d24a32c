import { AdminServiceDefinition, QueueServiceDefinition } from "@codeq/proto";
import type { Metadata } from "nice-grpc";
import {
  createLogger,
  identityFrom,
  readSecret,
  type Identity,
  Lifecycle,
  startGrpcService,
  type GrpcService,
  type Logger,
} from "@codeq/server-kit";
import { Limits } from "./limits";
import { MapCache, MigrationStore, RedisMapSource } from "@codeq/shardmap";
import { adminRouter } from "./admin-router";
import type { RouterConfig } from "./config";
import { RouterMetrics } from "./metrics";
import { queueRouter } from "./queue-router";
import { Routing } from "./routing";
import { ShardPool } from "./shard-pool";

/** A running router. */
export interface Router {
  readonly port: number;
  /** Port of the Prometheus endpoint (undefined when disabled). */
  readonly metricsPort: number | undefined;
  readonly grpc: GrpcService;
  readonly routing: Routing;
  /** Graceful shutdown: health NOT_SERVING, client streams end, in-flight calls finish. */
  stop(): Promise<void>;
}

/**
 * Starts a router: loads the shard map from the control store (waiting for one to
 * exist), follows its announcements and polls as a fallback, keeps connections and
 * a circuit breaker per shard, and serves codeq.v1.QueueService and AdminService
 * by forwarding to the shards that own each queue.
 */
export async function startRouter(
  config: RouterConfig,
  logger: Logger = createLogger("router"),
): Promise<Router> {
  if (config.devIdentity) {
    logger.warn(
      "DEVELOPMENT IDENTITY IS ON: any caller may state its tenant in x-codeq-tenant. Never run this in production.",
    );
  }
  let lastError = "";
  const source = new RedisMapSource({
    url: config.controlUrl,
    prefix: config.controlPrefix,
    onError: (err) => logOnce(err.message),
  });
  const logOnce = (message: string) => {
    if (message === lastError) return;
    lastError = message;
    logger.warn({ err: message }, "control store: keeping the last good shard map");
  };
  const cache = new MapCache(source, {
    pollMs: config.mapPollMs,
    startTimeoutMs: config.mapStartTimeoutMs,
    onError: (err) => logOnce(err.message),
  });
  const shardSecret = readSecret(
    "the shard secret",
    config.shardSecret,
    config.shardSecretFile || undefined,
  );
  const pool = new ShardPool(config, logger, shardSecret);
  try {
    pool.update(await cache.start());
  } catch (err) {
    await source.close();
    throw err;
  }
  cache.onChange((map, previous) => {
    pool.update(map);
    lastError = "";
    logger.info({ version: map.version, previous: previous?.version }, "shard map changed");
  });
  const metrics = new RouterMetrics(cache, pool);
  const authenticate = async (metadata: Metadata): Promise<Identity> =>
    identityFrom(metadata, { devIdentity: config.devIdentity });
  const limits = new Limits({
    tenantEnqueueRate: config.tenantEnqueueRate,
    tenantLeaseRate: config.tenantLeaseRate,
    burstSeconds: config.rateBurstSeconds,
    maxStreamsPerPrincipal: config.maxStreamsPerPrincipal,
  });
  const routing = new Routing(
    config,
    cache,
    pool,
    logger,
    metrics,
    authenticate,
    shardSecret,
    limits,
  );
  const migrations = new MigrationStore(config.controlUrl, config.controlPrefix);
  const lifecycle = new Lifecycle();
  const grpc = await startGrpcService({
    listen: config.listen,
    maxMessageBytes: config.maxMessageBytes,
    logger,
    lifecycle,
    middleware: [metrics.rpc.middleware()],
    register(server) {
      server.add(QueueServiceDefinition, queueRouter(routing, lifecycle));
      server.add(AdminServiceDefinition, adminRouter(routing, source, migrations));
      return [QueueServiceDefinition.fullName, AdminServiceDefinition.fullName];
    },
  });
  const metricsServer = config.metricsListen
    ? await metrics.serve(config.metricsListen)
    : undefined;
  logger.info(
    { port: grpc.port, metricsPort: metricsServer?.port, mapVersion: cache.status().version },
    "router ready",
  );

  let stopping: Promise<void> | undefined;
  return {
    port: grpc.port,
    metricsPort: metricsServer?.port,
    grpc,
    routing,
    stop() {
      stopping ??= (async () => {
        await grpc.shutdown(config.graceMs);
        await metricsServer?.close();
        cache.stop();
        pool.close();
        await source.close();
        await migrations.close();
      })();
      return stopping;
    },
  };
}
