import type { QueueRef } from "./keys";

export type TaskState = "READY" | "SCHEDULED" | "LEASED" | "COMPLETED" | "DEAD";
export type BackoffKind = "fixed" | "linear" | "exponential";

export interface BackoffPolicy {
  readonly kind: BackoffKind;
  /** Base delay, ms. */
  readonly baseMs: number;
  /** Cap of any computed delay, ms. */
  readonly maxMs: number;
  /** Equal jitter: a delay between half the computed one and all of it. */
  readonly jitter: boolean;
}

/**
 * A task record as stored (JSON, in the queue's `tasks` hash). Command and tenant
 * are the queue's and are not repeated; the payload and result live in their own
 * hashes. Optional fields are absent rather than null.
 */
export interface TaskRecord {
  id: string;
  priority: number;
  /** When the task is (or was) due, ms. */
  runAt: number;
  maxAttempts: number;
  /** Deliveries that counted as attempts (reset by a redrive). */
  attempts: number;
  /** Deliveries ever (never reset): the fencing value of the current lease token. */
  leaseSeq: number;
  backoff: BackoffPolicy;
  idemKey?: string;
  headers?: Record<string, string>;
  createdAt: number;
  updatedAt: number;
  state: TaskState;
  lastError?: string;
  /** While LEASED. */
  leaseDeadline?: number;
  /** While LEASED: the lease duration in force, ms. */
  leaseMs?: number;
  /** When it became COMPLETED or DEAD. */
  doneAt?: number;
}

/** A task as the engine returns it. */
export interface StoredTask extends TaskRecord, QueueRef {
  readonly shard: string;
  readonly payload: Buffer;
  /** Set on COMPLETED tasks acked with a result. */
  readonly result?: Buffer;
}

/** The immutable part of a task, stored as JSON in the queue's `tasks` hash. */
export interface StoredRecord {
  id: string;
  backoff: BackoffPolicy;
  idemKey?: string;
  headers?: Record<string, string>;
  createdAt: number;
}

const LETTER: Record<TaskState, string> = {
  READY: "R",
  SCHEDULED: "S",
  LEASED: "L",
  COMPLETED: "C",
  DEAD: "D",
};
const STATE_OF: Record<string, TaskState> = {
  R: "READY",
  S: "SCHEDULED",
  L: "LEASED",
  C: "COMPLETED",
  D: "DEAD",
};

/** The immutable JSON record of a task. */
export function encodeRecord(task: TaskRecord): string {
  const record: StoredRecord = { id: task.id, backoff: task.backoff, createdAt: task.createdAt };
  if (task.idemKey !== undefined) record.idemKey = task.idemKey;
  if (task.headers) record.headers = task.headers;
  return JSON.stringify(record);
}

/**
 * The mutable state string of a task (lua/includes/task-state.lua):
 * S,priority,attempts,maxAttempts,leaseSeq,runAt,until,leaseMs,updatedAt,lastError
 */
export function encodeState(task: TaskRecord): string {
  const until =
    task.state === "LEASED"
      ? task.leaseDeadline
      : task.state === "COMPLETED" || task.state === "DEAD"
        ? task.doneAt
        : 0;
  return [
    LETTER[task.state],
    task.priority,
    task.attempts,
    task.maxAttempts,
    task.leaseSeq,
    task.runAt,
    until ?? 0,
    task.state === "LEASED" ? (task.leaseMs ?? 0) : 0,
    task.updatedAt,
    task.lastError ?? "",
  ].join(",");
}

const STATE_PATTERN = /^([RSLCD]),(\d+),(\d+),(\d+),(\d+),(\d+),(\d+),(\d+),(\d+),([\s\S]*)$/;

/** Joins the stored record and state string back into one task record. */
export function decodeTask(record: string | Buffer, state: string | Buffer): TaskRecord {
  const r = JSON.parse(
    typeof record === "string" ? record : record.toString("utf8"),
  ) as StoredRecord;
  const m = STATE_PATTERN.exec(typeof state === "string" ? state : state.toString("utf8"));
  if (!m) throw new Error(`task ${r.id}: malformed state`);
  const st = STATE_OF[m[1]!]!;
  const until = Number(m[7]);
  const task: TaskRecord = {
    id: r.id,
    priority: Number(m[2]),
    runAt: Number(m[6]),
    maxAttempts: Number(m[4]),
    attempts: Number(m[3]),
    leaseSeq: Number(m[5]),
    backoff: r.backoff,
    createdAt: r.createdAt,
    updatedAt: Number(m[9]),
    state: st,
  };
  if (r.idemKey !== undefined) task.idemKey = r.idemKey;
  if (r.headers && Object.keys(r.headers).length > 0) task.headers = r.headers;
  if (m[10]) task.lastError = m[10];
  if (st === "LEASED") {
    task.leaseDeadline = until;
    task.leaseMs = Number(m[8]);
  } else if (st === "COMPLETED" || st === "DEAD") {
    task.doneAt = until;
  }
  return task;
}
