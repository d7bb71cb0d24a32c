export { createLogger, type Logger } from "./logger";
export { boolSetting, ConfigError, envKeyToField, intSetting, loadConfig } from "./config-loader";
export { Lifecycle, STREAM_DRAIN_SHARE, type LifecycleState } from "./lifecycle";
export {
  startGrpcService,
  onShutdownSignal,
  followMapHealth,
  MAP_HEALTH_SERVICE,
  DEFAULT_MAX_MESSAGE_BYTES,
  type GrpcService,
  type GrpcServiceOptions,
} from "./grpc-service";
export { runService } from "./main";
export {
  identityFrom,
  fromRouter,
  statedIdentity,
  identityMetadata,
  requireRole,
  servesAllTenants,
  secretMatches,
  IDENTITY_HEADERS,
  ROLES,
  type Identity,
  type IdentityOptions,
  type Role,
  type StatedHeaders,
} from "./identity";
export { readSecret } from "./secret";
export { Channel } from "./channel";
export {
  BadRequest,
  decodingSafely,
  rejectBadRequests,
  safeDecode,
  undecodableRequest,
} from "./bad-requests";
export { answerConcurrently } from "./answer-concurrently";
export { CALLER_CODES } from "./caller-codes";
export { cleanUpOnFailure } from "./clean-up-on-failure";
export { LoadGauge } from "./load-gauge";
export {
  collectProcessMetrics,
  registerMapCacheMetrics,
  RpcMetrics,
  serveMetrics,
  type MapCacheCounts,
  type MapCacheView,
  type MetricsServer,
} from "./metrics";
export {
  serverCredentials,
  channelCredentials,
  serverTlsOf,
  type ServerTls,
  type ClientTls,
} from "./tls";
