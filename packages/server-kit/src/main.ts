import { constants as osConstants } from "node:os";
import { installLeanAsyncBind } from "@codeq/common";
import { ConfigError, ignoredSettings } from "./config-loader";
import { createLogger, type Logger } from "./logger";
import { onShutdownSignal } from "./grpc-service";

/** How long a signal that came while starting waits for the start to finish, ms. */
const START_STOP_WAIT_MS = 1_000;

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
  // Signals are handled from the first moment: as a container's PID 1, node ignores a
  // SIGTERM it has no handler for, and a start that waits for its store or its map (up
  // to 30 s each) would sit out the orchestrator's grace period, then be killed. A
  // signal while starting stops the service gracefully if it is up within a second (it
  // may be serving already: its last steps take milliseconds); otherwise it ends as the
  // signal's default would (still waiting for its store or map, it has taken no work).
  let signalled: NodeJS.Signals | undefined;
  let giveUp: NodeJS.Timeout | undefined;
  const exitBySignal = (signal: NodeJS.Signals) =>
    process.exit(128 + (osConstants.signals[signal] ?? 0));
  const whileStarting = (signal: NodeJS.Signals) => {
    if (signalled) exitBySignal(signal);
    signalled = signal;
    console.error(`${name}: ${signal} while starting; stopping`);
    giveUp = setTimeout(() => exitBySignal(signal), START_STOP_WAIT_MS);
  };
  process.on("SIGTERM", whileStarting);
  process.on("SIGINT", whileStarting);
  (async () => {
    const config = loadConfig();
    const logger = createLogger(logName(config));
    for (const name of ignoredSettings(config as object))
      logger.warn(
        { setting: name },
        "this environment variable names no setting: ignored (misspelt?)",
      );
    const service = await start(config, logger);
    clearTimeout(giveUp);
    process.off("SIGTERM", whileStarting);
    process.off("SIGINT", whileStarting);
    const stop = onShutdownSignal(() => service.stop(), logger);
    if (signalled) stop(signalled);
  })().catch((err: unknown) => {
    if (err instanceof ConfigError) console.error(`${name}: ${err.message}`);
    else console.error(`${name}: failed to start:`, err);
    process.exit(1);
  });
}
