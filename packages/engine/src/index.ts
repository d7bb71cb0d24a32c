export { QueueEngine } from "./engine";
export type { EngineOptions } from "./engine-context";
export { SystemClock, ManualClock, type Clock } from "./clock";
export { EngineError, ScriptCode, itemStatus, type EngineErrorKind } from "./errors";
export {
  queueKeys,
  shardKeys,
  queueId,
  parseQueueId,
  NAME_PATTERN,
  SHARD_ID_PATTERN,
  PRIORITIES,
  type KeyLayout,
  type QueueKeys,
  type QueueRef,
  type ShardKeys,
} from "./keys";
export {
  encodeLeaseToken,
  decodeLeaseToken,
  leaseTokenShard,
  leaseTokenShardBytes,
  leaseTokenQueue,
  type LeaseTokenFields,
} from "./lease-token";
export { TaskIdGenerator, TASK_ID_PATTERN } from "./task-id";
export {
  DEFAULT_TASK_LIMITS,
  checkName,
  checkTask,
  type TaskSpec,
  type TaskLimits,
} from "./task-spec";
export type { TaskRecord, StoredTask, TaskState, BackoffPolicy, BackoffKind } from "./task-record";
export type { EnqueueOutcome, EnqueuedAndLeased } from "./enqueue";
export type { Delivery } from "./lease";
export { MAX_BATCH, type LeaseOptions } from "./lease-options";
export type { QueueStats } from "./queue-reads";
export { MAX_CLEANUP_BATCH } from "./engine";
export { deliveryBytes } from "./lease-size";
export type { GiveBackReason } from "./give-back";
export type { AckInput, NackInput, ExtendInput, SettleOutcome } from "./settle";
export type { DeadPage, DeadBatchOutcome, CleanupOutcome } from "./dead-letters";
export type {
  BindingsPage,
  ExportedTask,
  ImportOutcome,
  IdempotencyBinding,
  Placement,
} from "./migration";
export { MOVE_BATCH_BYTES } from "./migration";
export { scriptSources, LUA_DIR, type ScriptSource } from "./script-loader";
