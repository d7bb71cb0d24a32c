import { createServer, type Server, type ServerMiddleware } from "nice-grpc";
import { HealthDefinition, HealthState } from "nice-grpc-server-health";
import { ServerReflection, ServerReflectionService } from "nice-grpc-server-reflection";
import { loadDescriptorSet } from "@codeq/proto";
import type { Logger } from "./logger";
import { Lifecycle } from "./lifecycle";
import { boundedErrors } from "./bounded-errors";
import { healthService } from "./health-service";
import { serverCredentials, type ServerTls } from "./tls";

export interface GrpcServiceOptions {
  /** host:port; port 0 picks a free one. */
  listen: string;
  /** Largest request message accepted, bytes (default 16 MiB). */
  maxMessageBytes?: number;
  /**
   * How often the server pings each client connection, ms (default 30 s); a client that
   * does not answer within the same time, 10 s at most, is cut off, and its calls end
   * (a stream's leases are then released). Without it a peer that vanished (its host
   * gone, a firewall dropping the connection silently) keeps its streams open for as
   * long as the kernel's TCP timeouts take: many minutes.
   */
  keepaliveMs?: number;
  /** TLS (mutual with a client CA); plaintext when unset. */
  tls?: ServerTls | undefined;
  logger: Logger;
  /** Server middleware, outermost first (metrics, logging). */
  middleware?: ServerMiddleware[];
  /** Lifecycle to drive; a new one by default. Services may watch its signal before the server starts. */
  lifecycle?: Lifecycle;
  /** Adds the service implementations; returns their full names (for health and reflection). */
  register(server: Server): string[];
}

/** The default cap on one request message: a batch of 1000 tasks with small payloads fits. */
export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** How often a server pings each client connection by default, ms (GrpcServiceOptions.keepaliveMs). */
const DEFAULT_KEEPALIVE_MS = 30_000;
/** The longest a server waits for a ping's answer before it cuts the connection, ms. */
const KEEPALIVE_TIMEOUT_MAX_MS = 10_000;

/**
 * The health service name that says whether the shard map a service serves by is
 * confirmed by the control store: NOT_SERVING while it may be stale (the control store
 * does not answer, and the last good map is served). The service as a whole ("")
 * stays SERVING meanwhile: it works, and a load balancer should keep it.
 */
export const MAP_HEALTH_SERVICE = "codeq.ShardMap";

/**
 * Keeps MAP_HEALTH_SERVICE's status in step with `stale()`, looked at every `everyMs`
 * (and once now). Returns what stops it.
 */
export function followMapHealth(
  health: HealthState,
  stale: () => boolean,
  everyMs: number,
): () => void {
  const set = () => health.setStatus(stale() ? "unhealthy" : "healthy", MAP_HEALTH_SERVICE);
  set();
  const timer = setInterval(set, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** A running gRPC server with health (grpc.health.v1), reflection and an explicit lifecycle. */
export interface GrpcService {
  readonly server: Server;
  readonly port: number;
  readonly lifecycle: Lifecycle;
  readonly health: HealthState;
  /**
   * Sets the health of the server (`""`) and of every service it registered at once,
   * so a probe reads the same whichever name it asks (not the map's, MAP_HEALTH_SERVICE).
   */
  setServing(serving: boolean): void;
  /**
   * Graceful shutdown: health NOT_SERVING, stop accepting calls, let in-flight calls
   * finish for up to `graceMs`, then force.
   */
  shutdown(graceMs: number): Promise<void>;
}

export async function startGrpcService(options: GrpcServiceOptions): Promise<GrpcService> {
  const lifecycle = options.lifecycle ?? new Lifecycle();
  const health = HealthState();
  const keepaliveMs = options.keepaliveMs ?? DEFAULT_KEEPALIVE_MS;
  let server: Server = createServer({
    // a bigger message is refused (RESOURCE_EXHAUSTED) before it is parsed
    "grpc.max_receive_message_length": options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    "grpc.keepalive_time_ms": keepaliveMs,
    "grpc.keepalive_timeout_ms": Math.min(KEEPALIVE_TIMEOUT_MAX_MS, keepaliveMs),
  });
  for (const mw of [boundedErrors(), ...(options.middleware ?? [])])
    server = server.use(mw) as unknown as Server;
  const names = options.register(server);
  server.add(HealthDefinition, healthService(health, lifecycle.signal));
  server.add(
    ServerReflectionService,
    ServerReflection(loadDescriptorSet(), [...names, "grpc.health.v1.Health"]),
  );
  const port = await server.listen(options.listen, serverCredentials(options.tls));
  const setAll = (status: "healthy" | "unhealthy") => {
    health.setStatus(status);
    for (const name of names) health.setStatus(status, name);
  };
  setAll("healthy");
  lifecycle.to("serving");
  options.logger.info({ listen: options.listen, port, services: names }, "serving");

  return {
    server,
    port,
    lifecycle,
    health,
    setServing: (serving) => setAll(serving ? "healthy" : "unhealthy"),
    async shutdown(graceMs) {
      if (!lifecycle.to("draining")) return;
      setAll("unhealthy");
      options.logger.info({ graceMs }, "draining");
      const force = setTimeout(() => {
        options.logger.warn("grace period over; closing remaining calls");
        server.forceShutdown();
      }, graceMs);
      try {
        await server.shutdown();
      } finally {
        clearTimeout(force);
        lifecycle.to("stopped");
        options.logger.info("stopped");
      }
    },
  };
}

/**
 * Runs `stop` once on the first SIGTERM or SIGINT; a second signal exits at once.
 * Returns the handler, for a signal that came before it was installed.
 */
export function onShutdownSignal(
  stop: () => Promise<void>,
  logger: Logger,
): (signal: NodeJS.Signals) => void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal; exiting now");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "shutdown requested");
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", handler);
  process.on("SIGINT", handler);
  return handler;
}
