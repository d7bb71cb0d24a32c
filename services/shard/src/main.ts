#!/usr/bin/env node
import { runService } from "@codeq/server-kit";
import { loadShardConfig } from "./config";
import { startShardWorker } from "./shard-worker";

runService("codeq-shard", loadShardConfig, (c) => `shard-${c.id}`, startShardWorker);
