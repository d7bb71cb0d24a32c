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

/** The immutable part of a task, stored as JSON in the queue's `tasks` hash when it has any. */
export interface StoredRecord {
  backoff?: BackoffPolicy;
  idemKey?: string;
  headers?: Record<string, string>;
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
/** The state a state string's first letter names (undefined for "" or anything else). */
export const STATE_OF_LETTER: Readonly<Record<string, TaskState | undefined>> = STATE_OF;
const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** The creation time a task id carries (its first 10 characters, ULID layout). */
export function idTime(id: string): number {
  let t = 0;
  for (let i = 0; i < 10; i++) t = t * 32 + CROCKFORD.indexOf(id[i]!);
  return t;
}

function sameBackoff(a: BackoffPolicy, b: BackoffPolicy): boolean {
  return a.kind === b.kind && a.baseMs === b.baseMs && a.maxMs === b.maxMs && a.jitter === b.jitter;
}

/**
 * The JSON record of a task: only what a state string cannot hold (headers,
 * idempotency key, a backoff other than the default); "" when there is none, so
 * most tasks store no record at all.
 */
export function encodeRecord(task: TaskRecord, defaultBackoff: BackoffPolicy): string {
  const record: StoredRecord = {};
  if (!sameBackoff(task.backoff, defaultBackoff)) record.backoff = task.backoff;
  if (task.idemKey !== undefined) record.idemKey = task.idemKey;
  if (task.headers && Object.keys(task.headers).length > 0) record.headers = task.headers;
  return Object.keys(record).length > 0 ? JSON.stringify(record) : "";
}

const pad = (n: number, width: number) => String(n).padStart(width, "0");

/** A nonce as the state string stores it: 14 digits. */
export function nonceText(nonce: number): string {
  return pad(nonce, 14);
}

/** A lease sequence as the state string stores it: 10 digits. */
export function seqText(seq: number): string {
  return pad(seq, 10);
}

/** A time (ms) as the state string stores it: 13 digits. */
export function timeText(ms: number): string {
  return pad(ms, 13);
}

/** The fixed-width state string of a task (layout: lua/includes/task-state.lua). */
export function encodeState(task: TaskRecord, nonce = 0): string {
  const until =
    task.state === "LEASED"
      ? task.leaseDeadline
      : task.state === "COMPLETED" || task.state === "DEAD"
        ? task.doneAt
        : 0;
  return (
    LETTER[task.state] +
    task.priority +
    pad(task.attempts, 4) +
    pad(task.maxAttempts, 4) +
    seqText(task.leaseSeq) +
    nonceText(nonce) +
    timeText(task.runAt) +
    timeText(until ?? 0) +
    pad(task.state === "LEASED" ? (task.leaseMs ?? 0) : 0, 8) +
    timeText(task.updatedAt) +
    (task.lastError ?? "")
  );
}

/** A decoded state string: the task's mutable fields and its current delivery's nonce. */
export interface DecodedState {
  readonly task: TaskRecord;
  readonly nonce: number;
}

/** Joins the stored record ("" or absent: none) and state string back into one task record. */
export function decodeTask(
  id: string,
  record: string | Buffer,
  state: string | Buffer,
  defaultBackoff: BackoffPolicy,
): DecodedState {
  const text = typeof state === "string" ? state : state.toString("latin1");
  const st = STATE_OF[text[0] ?? ""];
  if (!st || text.length < 81) throw new Error(`task ${id}: malformed state`);
  const num = (from: number, to: number) => Number(text.slice(from - 1, to));
  const until = num(48, 60);
  const task: TaskRecord = {
    id,
    priority: num(2, 2),
    runAt: num(35, 47),
    maxAttempts: num(7, 10),
    attempts: num(3, 6),
    leaseSeq: num(11, 20),
    backoff: defaultBackoff,
    createdAt: idTime(id),
    updatedAt: num(69, 81),
    state: st,
  };
  if (record.length > 0) {
    const r = JSON.parse(
      typeof record === "string" ? record : record.toString("utf8"),
    ) as StoredRecord;
    if (r.backoff) task.backoff = r.backoff;
    if (r.idemKey !== undefined) task.idemKey = r.idemKey;
    if (r.headers && Object.keys(r.headers).length > 0) task.headers = r.headers;
  }
  if (text.length > 81) {
    // the error is UTF-8 text after the fixed part (which is ASCII)
    task.lastError =
      typeof state === "string" ? state.slice(81) : state.subarray(81).toString("utf8");
  }
  if (st === "LEASED") {
    task.leaseDeadline = until;
    task.leaseMs = num(61, 68);
  } else if (st === "COMPLETED" || st === "DEAD") {
    task.doneAt = until;
  }
  return { task, nonce: num(21, 34) };
}
