#!/usr/bin/env node
import { ConfigError, createLogger, onShutdownSignal } from "@codeq/server-kit";
import { loadShardConfig } from "./config";
import { startShardWorker } from "./shard-worker";

async function main(): Promise<void> {
  const config = loadShardConfig();
  const logger = createLogger(`shard-${config.id}`);
  const worker = await startShardWorker(config, logger);
  onShutdownSignal(() => worker.stop(), logger);
}

main().catch((err: unknown) => {
  // A bad configuration is the operator's to fix: say what, without a stack.
  if (err instanceof ConfigError) console.error(`codeq-shard: ${err.message}`);
  else console.error("codeq-shard: failed to start:", err);
  process.exit(1);
});
