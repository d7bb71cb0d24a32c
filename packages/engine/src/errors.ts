import { Status } from "nice-grpc-common";

/** The codes scripts return for refusals (negative) and benign repeats (positive). */
export enum ScriptCode {
  Ok = 0,
  /** A repeat the caller may treat as success: duplicate enqueue, repeated ack, import of a present task. */
  AlreadyDone = 1,
  NotFound = -1,
  /** The task is no longer leased under this token's fence. */
  StaleLease = -2,
  /** The lease deadline has passed. */
  LeaseExpired = -3,
  /** The record is in a state this operation does not accept. */
  WrongState = -4,
  /** A task with this id already exists. */
  DuplicateId = -5,
}

/** Why the engine refused a whole call. */
export type EngineErrorKind =
  "INVALID_ARGUMENT" | "NOT_FOUND" | "FAILED_PRECONDITION" | "RESOURCE_EXHAUSTED";

const statusOf: Record<EngineErrorKind, Status> = {
  INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
  NOT_FOUND: Status.NOT_FOUND,
  FAILED_PRECONDITION: Status.FAILED_PRECONDITION,
  RESOURCE_EXHAUSTED: Status.RESOURCE_EXHAUSTED,
};

/** A refusal of a whole engine call; nothing was changed. */
export class EngineError extends Error {
  override readonly name = "EngineError";
  constructor(
    readonly kind: EngineErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** The gRPC status a service answers with. */
  get status(): Status {
    return statusOf[this.kind];
  }
}

export function invalidArgument(message: string): EngineError {
  return new EngineError("INVALID_ARGUMENT", message);
}

/** The gRPC status and message for one item of a batch (ack, nack, extend). */
export function itemStatus(code: ScriptCode): { code: Status; message: string } {
  switch (code) {
    case ScriptCode.Ok:
    case ScriptCode.AlreadyDone:
      return { code: Status.OK, message: "" };
    case ScriptCode.NotFound:
      return {
        code: Status.NOT_FOUND,
        message: "no such lease: unknown token, or the task no longer exists",
      };
    case ScriptCode.StaleLease:
      return {
        code: Status.FAILED_PRECONDITION,
        message:
          "stale lease: the task was settled, expired or delivered again since this token was issued",
      };
    case ScriptCode.LeaseExpired:
      return {
        code: Status.FAILED_PRECONDITION,
        message: "lease expired: its deadline has passed",
      };
    case ScriptCode.WrongState:
      return {
        code: Status.FAILED_PRECONDITION,
        message: "the task is not in a state this operation accepts",
      };
    case ScriptCode.DuplicateId:
      return { code: Status.ALREADY_EXISTS, message: "a task with this id exists" };
  }
}
