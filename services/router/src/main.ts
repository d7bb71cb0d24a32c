#!/usr/bin/env node
import { ConfigError, createLogger, onShutdownSignal } from "@codeq/server-kit";
import { loadRouterConfig } from "./config";
import { startRouter } from "./router";

async function main(): Promise<void> {
  const config = loadRouterConfig();
  const logger = createLogger("router");
  const router = await startRouter(config, logger);
  onShutdownSignal(() => router.stop(), logger);
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) console.error(`codeq-router: ${err.message}`);
  else console.error("codeq-router: failed to start:", err);
  process.exit(1);
});
