/**
 * @codeq/wire: conversions between the codeq.v1 wire contract and the engine's
 * types, and the checks a batch passes before any shard sees it.
 */
export {
  stateToWire,
  specFromWire,
  taskToWire,
  deliveryToWire,
  countsToWire,
  exportedToWire,
  exportedFromWire,
} from "./wire";
export {
  nackProblem,
  ackProblem,
  MAX_RESULT_BYTES,
  TASK_FIELDS_MAX_BYTES,
  requestLimitProblem,
  failedEnqueueResults,
  extendProblem,
  settlementsProblem,
  MAX_NACK_DELAY_MS,
  MAX_NACK_ERROR_BYTES,
  LEASE_MS_RANGE,
  MAX_RESPONSE_BYTES_HEADER,
} from "./checks";
export { MAP_VERSION_TRAILER, OWNER_TRAILER } from "./fencing";
