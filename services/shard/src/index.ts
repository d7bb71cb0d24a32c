export {
  loadShardConfig,
  shardConfig,
  shardConfigSchema,
  SHARD_ENV_PREFIX,
  type ShardConfig,
} from "./config";
export { startShardWorker, type ShardWorker } from "./shard-worker";
export { identityFrom, type Identity, type Role } from "@codeq/server-kit";
export { NotOwnerError, MAP_VERSION_TRAILER, OWNER_TRAILER } from "./errors";
