export { bindHasPerCallPrototype, installLeanAsyncBind, leanBind } from "./async-bind";
export { formatProblems, messageOf, toError } from "./errors";
export { NAME, NAME_PATTERN, SHARD_ID, SHARD_ID_PATTERN } from "./names";
export {
  addGcPause,
  gcPausesSince,
  GcTally,
  NO_GC_PAUSES,
  observeGcPauses,
  type GcKind,
  type GcPauses,
} from "./gc-pauses";
export { linkedSignal } from "./linked-signal";
export { withTimeout } from "./with-timeout";
export {
  DEFAULT_REDRIVE_RATE,
  MAX_PURGE_TASKS,
  MAX_REDRIVE_RATE,
  MAX_REDRIVE_TASKS,
} from "./limits";
export { redisTls } from "./redis-tls";
