import { createLogger, startGrpcService, type GrpcService, type Logger } from "@codeq/server-kit";
import type { RouterConfig } from "./config";

/** A running router. */
export interface Router {
  readonly port: number;
  readonly grpc: GrpcService;
  stop(): Promise<void>;
}

/**
 * Starts the router. At this stage it serves health and reflection only; routing
 * over the shard map lands with the shard map work.
 */
export async function startRouter(
  config: RouterConfig,
  logger: Logger = createLogger("router"),
): Promise<Router> {
  const grpc = await startGrpcService({ listen: config.listen, logger, register: () => [] });
  return {
    port: grpc.port,
    grpc,
    stop: () => grpc.shutdown(config.graceMs),
  };
}
