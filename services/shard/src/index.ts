export { loadShardConfig, shardConfigSchema, SHARD_ENV_PREFIX, type ShardConfig } from "./config";
export { startShardWorker, type ShardWorker } from "./shard-worker";
