import { setTimeout as sleep } from "node:timers/promises";
import { AdminServiceDefinition, QueueServiceDefinition } from "@codeq/proto";
import { ServerError, Status, type Metadata } from "nice-grpc";
import { authenticatorFromConfig, isAuthError } from "@codeq/auth";
import { messageOf, redisTls } from "@codeq/common";
import {
  createLogger,
  identityFrom,
  ConfigError,
  followMapHealth,
  readSecret,
  serverTlsOf,
  type Identity,
  cleanUpOnFailure,
  Lifecycle,
  rejectBadRequests,
  startGrpcService,
  type GrpcService,
  type Logger,
} from "@codeq/server-kit";
import { Limits } from "./limits";
import {
  draftOf,
  isVersionConflict,
  MapCache,
  MigrationStore,
  RedisMapSource,
  ShardMapError,
  StaticMapSource,
  type MapSource,
} from "@codeq/shardmap";
import { adminRouter } from "./admin-router";
import { authConfigOf, type RouterConfig } from "./config";
import { FormerShards } from "./former-shards";
import { RouterMetrics } from "./metrics";
import { routerAdminService, routerQueueService } from "./passthrough";
import { queueRouter } from "./queue-router";
import { Routing } from "./routing";
import { ShardPool } from "./shard-pool";

/**
 * How the router establishes a caller's identity: from the `authorization`
 * credential when authentication is configured; from the stated x-codeq-tenant
 * only in development mode and only for a call without a credential.
 */
function callerAuthentication(
  config: RouterConfig,
  logger: Logger,
): (metadata: Metadata) => Promise<Identity> {
  const auth = authConfigOf(config);
  const authenticator = auth
    ? authenticatorFromConfig(auth, {
        onJwksReloadError: (err) =>
          logger.warn({ err: err.message }, "JWKS unusable; keeping the last good keys"),
        onTokensReloadError: (err) =>
          logger.warn(
            { err: err.message },
            "static tokens file unusable; keeping the last good tokens",
          ),
      })
    : undefined;
  if (!authenticator && !config.devIdentity)
    logger.warn(
      "no authentication configured and development identity off: every call will be refused",
    );
  // a key set's tokens for any application of the identity provider would do: roles
  // such as "admin" are common claim values
  if ((config.jwtJwksFile || config.jwtJwksUrl) && (!config.jwtAudience || !config.jwtIssuer))
    logger.warn(
      "JWT keys are configured without CODEQ_ROUTER_JWT_AUDIENCE or CODEQ_ROUTER_JWT_ISSUER: a token the identity provider issued for any other application is accepted too; set both (docs/security.md)",
    );
  return async (metadata) => {
    const authorization = metadata.get("authorization");
    if (authenticator && (authorization !== undefined || !config.devIdentity)) {
      try {
        return await authenticator.authenticate(authorization);
      } catch (err) {
        if (isAuthError(err)) throw new ServerError(Status[err.code], err.message);
        throw err;
      }
    }
    return identityFrom(metadata, { devIdentity: config.devIdentity });
  };
}

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
    if (config.adminTenants)
      logger.warn(
        "CODEQ_ROUTER_ADMIN_TENANTS protects nothing while development identity is on: a caller states its own tenant and roles",
      );
  } else if (!config.adminTenants)
    logger.warn(
      "CODEQ_ROUTER_ADMIN_TENANTS is not set: an admin of any tenant (a role tenants hold to manage their own dead letters) may change the shard map, move every tenant's queues and add or remove shards; set it to the operators' tenant(s) (docs/security.md)",
    );
  if (config.shardMapFile && config.bootstrapMapFile)
    throw new ConfigError(
      "CODEQ_ROUTER_SHARD_MAP_FILE (a static map, no control store) and CODEQ_ROUTER_BOOTSTRAP_MAP_FILE (a first map for the control store) exclude each other: set one",
    );
  let lastError = "";
  // the map and the migration records: one control store, reached alike
  const controlTls = redisTls(config.controlUrl, config.controlTlsCaFile);
  const source: MapSource = config.shardMapFile
    ? staticSource(config.shardMapFile)
    : new RedisMapSource({
        url: config.controlUrl,
        prefix: config.controlPrefix,
        redisOptions: controlTls,
        onError: (err) => logOnce(err.message),
      });
  const logOnce = (message: string) => {
    if (message === lastError) return;
    lastError = message;
    logger.warn({ err: message }, "control store: keeping the last good shard map");
  };
  if (config.bootstrapMapFile)
    await bootstrapMap(source, config.bootstrapMapFile, logger, config.mapStartTimeoutMs).catch(
      async (err: unknown) => {
        await source.close();
        throw err;
      },
    );
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
  const authenticate = callerAuthentication(config, logger);
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
  // a static map has no migrations, and no control store to keep them in
  const migrations = config.shardMapFile
    ? undefined
    : new MigrationStore(config.controlUrl, config.controlPrefix, controlTls);
  /** What the router opened before it serves: the map cache and its source, the shard channels. */
  const closeClients = async () => {
    cache.stop();
    pool.close();
    await source.close();
    await migrations?.close();
  };
  const lifecycle = new Lifecycle();
  // a start that fails (the address taken, say) leaves nothing running behind it
  const grpc = await cleanUpOnFailure(
    () =>
      startGrpcService({
        listen: config.listen,
        maxMessageBytes: config.maxMessageBytes,
        keepaliveMs: config.keepaliveMs,
        tls: serverTlsOf(config.tlsCertFile, config.tlsKeyFile, config.tlsClientCaFile),
        logger,
        lifecycle,
        middleware: [metrics.rpc.middleware(), rejectBadRequests()],
        register(server) {
          // the same service, with answers passed through as the shards' bytes
          server.add(
            routerQueueService as unknown as typeof QueueServiceDefinition,
            queueRouter(
              routing,
              lifecycle,
              new FormerShards(migrations, () => routing.map.version),
            ),
          );
          server.add(
            routerAdminService as unknown as typeof AdminServiceDefinition,
            adminRouter(routing, source, migrations),
          );
          return [QueueServiceDefinition.fullName, AdminServiceDefinition.fullName];
        },
      }),
    closeClients,
  );
  const metricsServer = config.metricsListen
    ? await cleanUpOnFailure(
        () => metrics.serve(config.metricsListen),
        async () => {
          await grpc.shutdown(0).catch(() => undefined);
          await closeClients();
        },
      )
    : undefined;
  // health says whether the map served is confirmed (SPEC: stale, said in health too)
  let wasStale = false;
  const stopMapHealth = followMapHealth(
    grpc.health,
    () => {
      const { stale, version } = cache.status();
      if (wasStale && !stale) {
        // the next failure is news again, whatever it says
        lastError = "";
        logger.info({ version }, "shard map confirmed again by the control store");
      }
      wasStale = stale;
      return stale;
    },
    MAP_HEALTH_MS,
  );
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
        stopMapHealth();
        await grpc.shutdown(config.graceMs);
        await metricsServer?.close();
        await closeClients();
      })();
      return stopping;
    },
  };
}

/** How often the map's health status is brought in step with the cache, ms. */
const MAP_HEALTH_MS = 1_000;

/** The static map file's source; a bad file is a configuration error (every problem, and the path). */
function staticSource(file: string): StaticMapSource {
  try {
    return StaticMapSource.load(file);
  } catch (err) {
    if (err instanceof ShardMapError) throw new ConfigError(err.message);
    throw err;
  }
}

/**
 * Writes the map in `file` to the control store if it holds none yet (a first start).
 * A bad file stops the start, as `shardMapFile` does; another router writing first is
 * not an error (its map is read instead).
 */
async function bootstrapMap(
  source: MapSource,
  file: string,
  logger: Logger,
  timeoutMs: number,
): Promise<void> {
  const { map } = staticSource(file);
  // a store still starting is waited for as long as the start waits for a map
  const until = Date.now() + timeoutMs;
  for (let warned = false; ;) {
    try {
      if (await source.get()) return;
      break;
    } catch (err) {
      if (Date.now() >= until) return; // the start then fails as without a file
      if (!warned)
        logger.warn(
          { err: messageOf(err) },
          "control store unreachable: waiting to write the first map",
        );
      warned = true;
      await sleep(BOOTSTRAP_RETRY_MS);
    }
  }
  try {
    const written = await source.compareAndSet(0, draftOf(map), {
      actor: "router bootstrap",
      action: "Bootstrap",
      summary: `from ${file}: shards ${Object.keys(map.shards).join(", ")}; default ${map.defaultShard}`,
    });
    logger.info(
      { file, version: written.version },
      "wrote the first shard map to the control store",
    );
  } catch (err) {
    if (!isVersionConflict(err)) throw err;
  }
}

/** How often a router retries a control store it cannot reach to write the first map, ms. */
const BOOTSTRAP_RETRY_MS = 500;
