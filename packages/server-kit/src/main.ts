import { installLeanAsyncBind } from "@codeq/common";
import { ConfigError, ignoredSettings } from "./config-loader";
import { createLogger, type Logger } from "./logger";
import { onShutdownSignal } from "./grpc-service";

/**
 * The entry point every service shares: loads its configuration, starts it, and
 * stops it gracefully on SIGTERM/SIGINT. A bad configuration exits 1 with the
 * message alone (it is the operator's to fix); any other start failure with its stack.
 * Installs `leanBind` first: a service's client calls (the router's to shards, a
 * shard's mover) are HTTP/2 requests too.
 */
export function runService<C>(
  name: string,
  loadConfig: () => C,
  logName: (config: C) => string,
  start: (config: C, logger: Logger) => Promise<{ stop(): Promise<void> }>,
): void {
  installLeanAsyncBind();
  (async () => {
    const config = loadConfig();
    const logger = createLogger(logName(config));
    for (const name of ignoredSettings(config as object))
      logger.warn(
        { setting: name },
        "this environment variable names no setting: ignored (misspelt?)",
      );
    const service = await start(config, logger);
    onShutdownSignal(() => service.stop(), logger);
  })().catch((err: unknown) => {
    if (err instanceof ConfigError) console.error(`${name}: ${err.message}`);
    else console.error(`${name}: failed to start:`, err);
    process.exit(1);
  });
}
