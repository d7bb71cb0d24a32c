import { Redis } from "ioredis";
import { createLogger, startGrpcService, type GrpcService, type Logger } from "@codeq/server-kit";
import type { ShardConfig } from "./config";

/** A running shard worker: the gRPC server and the connection to its own store. */
export interface ShardWorker {
  readonly port: number;
  readonly grpc: GrpcService;
  readonly redis: Redis;
  stop(): Promise<void>;
}

/**
 * Starts a shard worker on its store. At this stage it serves health (SERVING only
 * while its store answers) and reflection; the queue services are added as the
 * engine and the service land.
 */
export async function startShardWorker(
  config: ShardConfig,
  logger: Logger = createLogger(`shard-${config.id}`),
): Promise<ShardWorker> {
  const redis = new Redis(config.redisUrl, { protocol: 2, lazyConnect: true });
  redis.on("error", (err) => logger.warn({ err: err.message }, "store connection error"));
  await redis.connect();
  const grpc = await startGrpcService({ listen: config.listen, logger, register: () => [] });

  const checkStore = async () => {
    if (grpc.lifecycle.state !== "serving") return;
    const ok = await redis.ping().then(
      () => true,
      () => false,
    );
    grpc.health.setStatus(ok ? "healthy" : "unhealthy");
  };
  const timer = setInterval(() => void checkStore(), config.storeCheckMs);
  timer.unref();

  return {
    port: grpc.port,
    grpc,
    redis,
    async stop() {
      clearInterval(timer);
      await grpc.shutdown(config.graceMs);
      redis.disconnect();
    },
  };
}
