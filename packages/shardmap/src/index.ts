/**
 * @codeq/shardmap: the shard map (model, validation), where it lives (sources with
 * compare-and-set writes, announcements and an audit log), a resilient cache of
 * it, and the ShardSupplier implementations that resolve a queue to shards.
 */
export {
  ShardMapError,
  VersionConflictError,
  MapNotLoadedError,
  NoShardMapError,
  isVersionConflict,
} from "./errors";
export { SHARD_ID_PATTERN, NAME_PATTERN, TENANT_KEY_PATTERN, isEndpoint, tenantKey } from "./names";
export {
  DEFAULT_PREFIX,
  DEFAULT_AUDIT_CAP,
  shardMapKey,
  auditKey,
  changedChannel,
  isUnfinished,
  movesOverlap,
  entry,
  drainingSide,
  takesFrom,
  fillingSide,
  FENCE_REFRESH_MS,
  type ShardMap,
  type ShardMapDraft,
  type ShardInfo,
  type ShardState,
  type Migration,
  type MigrationState,
  type RoutingTable,
} from "./shard-map";
export { validateShardMap, assertShardMap, sharesEndpoint, type ValidateOptions } from "./validate";
export type { MapSource, ChangeInfo, AuditEntry } from "./source";
export { RedisMapSource, type RedisMapSourceOptions } from "./redis-map-source";
export { MemoryMapSource, type MemoryMapSourceOptions } from "./memory-map-source";
export {
  MapCache,
  type MapCacheOptions,
  type MapCacheStatus,
  type MapCacheCounters,
  type MapChangeListener,
} from "./map-cache";
export type { ShardSupplier } from "./supplier";
export {
  resolveQueue,
  resolveCurrent,
  applicableMigrations,
  fillingMigration,
  movesTenant,
  currentShardOf,
  queueShardsOf,
  commandShardsOf,
  type Resolution,
  type ResolvedBy,
} from "./resolve";
export { MapSupplier } from "./map-supplier";
export { newMigrationId } from "./migration-id";
export {
  finishDefaultChange,
  finishedDefaultSummary,
  formerDefaultActor,
  type FinishedDefaultChange,
} from "./default-change";
export { StaticYamlSupplier, loadStaticSupplier, parseStaticMap } from "./static-yaml-supplier";
export { StaticMapSource, StaticMapError } from "./static-map-source";
export { HashSupplier, type HashSupplierOptions } from "./hash-supplier";
export {
  MigrationStore,
  emptyCounts,
  progressId,
  FINISHED_CAP,
  type MigrationCounts,
  type MigrationProgress,
  type FinishedMigration,
} from "./migration-store";
export { updateMap, draftOf } from "./update";
