import {
  BackoffKind,
  TaskState,
  type internal,
  type EnqueueRequest,
  type LeasedTask,
  type QueueCounts,
  type Task,
} from "@codeq/proto";
import type {
  Delivery,
  ExportedTask,
  QueueStats,
  StoredTask,
  TaskSpec,
  TaskState as EngineState,
  BackoffKind as EngineBackoffKind,
} from "@codeq/engine";

/** Conversions between the wire contract (codeq.v1) and the engine's types. */

const STATE: Record<EngineState, TaskState> = {
  READY: TaskState.TASK_STATE_READY,
  SCHEDULED: TaskState.TASK_STATE_SCHEDULED,
  LEASED: TaskState.TASK_STATE_LEASED,
  COMPLETED: TaskState.TASK_STATE_COMPLETED,
  DEAD: TaskState.TASK_STATE_DEAD,
};

const KIND_TO_WIRE: Record<EngineBackoffKind, BackoffKind> = {
  fixed: BackoffKind.BACKOFF_KIND_FIXED,
  linear: BackoffKind.BACKOFF_KIND_LINEAR,
  exponential: BackoffKind.BACKOFF_KIND_EXPONENTIAL,
};

export function stateToWire(state: EngineState | undefined): TaskState {
  return state ? STATE[state] : TaskState.TASK_STATE_UNSPECIFIED;
}

/** An EnqueueRequest as the engine's spec (range checks happen in the engine). */
export function specFromWire(req: EnqueueRequest): TaskSpec {
  const spec: {
    -readonly [K in keyof TaskSpec]: TaskSpec[K];
  } = {
    payload: req.payload,
    priority: req.priority,
    maxAttempts: req.maxAttempts,
  };
  if (req.delayMs) spec.delayMs = req.delayMs;
  if (req.runAtMs) spec.runAtMs = req.runAtMs;
  if (req.idempotencyKey) spec.idempotencyKey = req.idempotencyKey;
  if (Object.keys(req.headers).length > 0) spec.headers = req.headers;
  if (req.backoff) {
    const b = req.backoff;
    // a kind this version does not know is the caller's to fix: the engine's check
    // refuses it (INVALID_ARGUMENT), rather than retrying as some other kind
    const kind =
      b.kind === BackoffKind.BACKOFF_KIND_FIXED
        ? "fixed"
        : b.kind === BackoffKind.BACKOFF_KIND_LINEAR
          ? "linear"
          : b.kind === BackoffKind.BACKOFF_KIND_EXPONENTIAL ||
              b.kind === BackoffKind.BACKOFF_KIND_UNSPECIFIED
            ? "exponential"
            : (`kind ${Number(b.kind)}` as "exponential");
    spec.backoff = {
      kind,
      baseMs: b.baseMs || 1000,
      maxMs: b.maxMs || Math.max(300_000, b.baseMs),
      jitter: b.jitter,
    };
  }
  return spec;
}

/**
 * Shared parts of the tasks a shard worker pushes, which are only ever encoded: no
 * empty object, buffer or backoff per task (each a young object, the buffer also an
 * ArrayBuffer the scavenger has to sweep). The backoff is kept for the last policy
 * seen, which is the engine's one default object for most tasks.
 */
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});
const NO_RESULT = Buffer.alloc(0);
let lastBackoff: { policy: StoredTask["backoff"]; wire: Task["backoff"] } | undefined;

function backoffToWire(policy: StoredTask["backoff"]): Task["backoff"] {
  if (lastBackoff?.policy !== policy) {
    const wire = Object.freeze({
      kind: KIND_TO_WIRE[policy.kind],
      baseMs: policy.baseMs,
      maxMs: policy.maxMs,
      jitter: policy.jitter,
    });
    lastBackoff = { policy, wire };
  }
  return lastBackoff.wire;
}

export function taskToWire(task: StoredTask): Task {
  return {
    id: task.id,
    command: task.command,
    tenant: task.tenant,
    payload: task.payload,
    priority: task.priority,
    runAtMs: task.runAt,
    maxAttempts: task.maxAttempts,
    attempts: task.attempts,
    backoff: backoffToWire(task.backoff),
    idempotencyKey: task.idemKey ?? "",
    headers: task.headers ?? (NO_HEADERS as Record<string, string>),
    createdAtMs: task.createdAt,
    updatedAtMs: task.updatedAt,
    state: STATE[task.state],
    lastError: task.lastError ?? "",
    result: task.result ?? NO_RESULT,
    shard: task.shard,
    leaseDeadlineMs: task.leaseDeadline ?? 0,
  };
}

export function deliveryToWire(d: Delivery): LeasedTask {
  return { task: taskToWire(d.task), leaseToken: d.token, leaseDeadlineMs: d.deadline };
}

export function countsToWire(s: QueueStats): QueueCounts {
  return {
    readyByPriority: s.readyByPriority,
    ready: s.ready,
    scheduled: s.scheduled,
    leased: s.leased,
    dead: s.dead,
    completed: s.completed,
  };
}

const STATE_FROM_WIRE: Partial<Record<TaskState, EngineState>> = {
  [TaskState.TASK_STATE_READY]: "READY",
  [TaskState.TASK_STATE_SCHEDULED]: "SCHEDULED",
  [TaskState.TASK_STATE_LEASED]: "LEASED",
  [TaskState.TASK_STATE_COMPLETED]: "COMPLETED",
  [TaskState.TASK_STATE_DEAD]: "DEAD",
};

const KIND_FROM_WIRE: Partial<Record<BackoffKind, EngineBackoffKind>> = {
  [BackoffKind.BACKOFF_KIND_FIXED]: "fixed",
  [BackoffKind.BACKOFF_KIND_LINEAR]: "linear",
  [BackoffKind.BACKOFF_KIND_EXPONENTIAL]: "exponential",
};

/** A task on its way to another shard, in the internal ImportTasks form. */
export function exportedToWire(e: ExportedTask): internal.ImportedTask {
  return {
    task: taskToWire(e.task),
    idempotencyExpiresAtMs: e.idempotencyExpiresAt,
    leaseSeq: e.task.leaseSeq,
    doneAtMs: e.task.doneAt ?? 0,
  };
}

/** A moved task as the importing shard's engine takes it; undefined when the state cannot move. */
export function exportedFromWire(
  w: internal.ImportedTask,
  shard: string,
): ExportedTask | undefined {
  const t = w.task;
  const state = t && STATE_FROM_WIRE[t.state];
  if (!t || !state) return undefined;
  const b = t.backoff;
  const task: StoredTask = {
    id: t.id,
    command: t.command,
    tenant: t.tenant,
    shard,
    payload: Buffer.from(t.payload),
    priority: t.priority,
    runAt: t.runAtMs,
    maxAttempts: t.maxAttempts,
    attempts: t.attempts,
    leaseSeq: w.leaseSeq,
    backoff: {
      kind: (b && KIND_FROM_WIRE[b.kind]) ?? "exponential",
      baseMs: b?.baseMs ?? 1000,
      maxMs: b?.maxMs ?? 300_000,
      jitter: b?.jitter ?? true,
    },
    ...(t.idempotencyKey ? { idemKey: t.idempotencyKey } : {}),
    ...(Object.keys(t.headers).length > 0 ? { headers: t.headers } : {}),
    createdAt: t.createdAtMs,
    updatedAt: t.updatedAtMs,
    state,
    ...(t.lastError ? { lastError: t.lastError } : {}),
    ...(w.doneAtMs ? { doneAt: w.doneAtMs } : {}),
  };
  return { task, idempotencyExpiresAt: w.idempotencyExpiresAtMs };
}
