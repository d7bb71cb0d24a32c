export {
  RedisServer,
  EXTERNAL_REDIS_ENV,
  REDIS_BIN_ENV,
  type RedisServerOptions,
} from "./redis-server";
export { startGrpcServer, type TestGrpcServer } from "./grpc-server";
export { freePort } from "./free-port";
export {
  checkStartFailureLeavesNothing,
  occupyPort,
  portIsFree,
  type OccupiedPort,
} from "./occupied-port";
export { withUnimplemented } from "./unimplemented";
export { listReflectedServices } from "./reflection-client";
export { isAlive } from "./process-alive";
export { trackChild, untrackChild } from "./process-registry";
export { testCert } from "./certs";
export { exposeGc, forceGcsInOneTurn } from "./gc";
export { startRelay, type HeldReplies, type Relay } from "./relay";
export { delimited, pb, rawService, tag, varint, type RawMethod } from "./raw-protobuf";
export { steady } from "./steady";
