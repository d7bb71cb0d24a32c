export {
  loadShardConfig,
  shardConfig,
  shardConfigSchema,
  SHARD_ENV_PREFIX,
  type ShardConfig,
} from "./config";
export { startShardWorker, type ShardWorker } from "./shard-worker";
export { NotOwnerError, MAP_VERSION_TRAILER, OWNER_TRAILER } from "./errors";
export { SHUT_DOWN_WHILE_HELD } from "./lease-stream";
