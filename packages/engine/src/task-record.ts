import { invalidArgument } from "./errors";
import type { QueueRef } from "./keys";
import { ID_WIDTH, idTime } from "./task-id";

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
const STATE_OF_CODE = new Map(
  Object.entries(STATE_OF).map(([letter, state]) => [letter.charCodeAt(0), state]),
);
/** The state a state string's first letter names (undefined for "" or anything else). */
export const STATE_OF_LETTER: Readonly<Record<string, TaskState | undefined>> = STATE_OF;

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

/** Digits of a lease sequence, a nonce and a time (ms) wherever the scripts read them. */
export const SEQ_DIGITS = 10;
export const NONCE_DIGITS = 14;
const TIME_DIGITS = 13;

/** A nonce as the state string stores it: NONCE_DIGITS digits. */
export function nonceText(nonce: number): string {
  return pad(nonce, NONCE_DIGITS);
}

/** A lease sequence as the state string stores it: SEQ_DIGITS digits. */
export function seqText(seq: number): string {
  return pad(seq, SEQ_DIGITS);
}

/** A time (ms) as the state string stores it: TIME_DIGITS digits. */
export function timeText(ms: number): string {
  return pad(ms, TIME_DIGITS);
}

const POWERS = Array.from({ length: 16 }, (_, i) => 10 ** i);

/**
 * Writes `n` at `at` as `width` zero-padded ASCII digits and returns the offset after
 * them: the fixed-width fields the scripts read, written without a string per field.
 * Refuses (INVALID_ARGUMENT) a value that is not a whole number that fits, which would
 * shift every later field: an imported task's, say; enqueued ones are checked before.
 */
export function putDigits(buf: Buffer, at: number, n: number, width: number): number {
  if (!Number.isInteger(n) || n < 0 || n >= POWERS[width]!)
    throw invalidArgument(`${n} is not a whole number of at most ${width} digits`);
  for (let i = at + width - 1; i >= at; i--) {
    const digit = n % 10;
    buf[i] = 48 + digit;
    n = (n - digit) / 10;
  }
  return at + width;
}

/** The fixed part of a state string, in bytes (an error's text may follow it). */
export const STATE_WIDTH = 81;

/** A task's id and the fixed part of its state, as the scripts pack them. */
export const PACKED_WIDTH = ID_WIDTH + STATE_WIDTH;

/**
 * Writes the fixed part of a task's state string (layout: lua/includes/task-state.lua)
 * at `at`; returns the offset after it. The error, if any, is not written.
 */
export function writeState(buf: Buffer, at: number, task: TaskRecord, nonce = 0): number {
  const until =
    task.state === "LEASED"
      ? task.leaseDeadline
      : task.state === "COMPLETED" || task.state === "DEAD"
        ? task.doneAt
        : 0;
  buf[at] = LETTER[task.state].charCodeAt(0);
  at = putDigits(buf, at + 1, task.priority, 1);
  at = putDigits(buf, at, task.attempts, 4);
  at = putDigits(buf, at, task.maxAttempts, 4);
  at = putDigits(buf, at, task.leaseSeq, SEQ_DIGITS);
  at = putDigits(buf, at, nonce, NONCE_DIGITS);
  at = putDigits(buf, at, task.runAt, TIME_DIGITS);
  at = putDigits(buf, at, until ?? 0, TIME_DIGITS);
  at = putDigits(buf, at, task.state === "LEASED" ? (task.leaseMs ?? 0) : 0, 8);
  return putDigits(buf, at, task.updatedAt, TIME_DIGITS);
}

/**
 * Whether writeState writes the same bytes for `a` as for `b` (nonce 0). A batch's
 * tasks mostly do, and a copy of the state written before costs a twentieth of
 * writing it (enqueue.ts). Compares every field writeState reads, some of them
 * whatever the state (stricter than it needs to be, never looser).
 */
export function sameState(a: TaskRecord, b: TaskRecord): boolean {
  return (
    a.state === b.state &&
    a.priority === b.priority &&
    a.attempts === b.attempts &&
    a.maxAttempts === b.maxAttempts &&
    a.leaseSeq === b.leaseSeq &&
    a.runAt === b.runAt &&
    a.leaseDeadline === b.leaseDeadline &&
    a.doneAt === b.doneAt &&
    a.leaseMs === b.leaseMs &&
    a.updatedAt === b.updatedAt
  );
}

/** The state string of a task: the fixed part, then its last error if any. */
export function encodeState(task: TaskRecord, nonce = 0): string {
  const fixed = Buffer.allocUnsafe(STATE_WIDTH);
  writeState(fixed, 0, task, nonce);
  return fixed.toString("latin1") + (task.lastError ?? "");
}

/** A decoded state string: the task's mutable fields and its current delivery's nonce. */
export interface DecodedState {
  readonly task: TaskRecord;
  readonly nonce: number;
}

/**
 * The number in 1-based columns `from`..`to` of a state's fixed part; NaN when one of
 * them is not a digit.
 */
function digitsAt(fixed: Uint8Array, from: number, to: number): number {
  let n = 0;
  for (let i = from - 1; i < to; i++) {
    const digit = fixed[i]! - 48;
    if (digit < 0 || digit > 9) return NaN;
    n = n * 10 + digit;
  }
  return n;
}

/**
 * True when a stored state string is LEASED under exactly this delivery: the check
 * `holds` makes in lua/includes/task-state.lua, for a state read by a plain command.
 */
export function holdsLease(state: Buffer | null, seq: number, nonce: number): boolean {
  return (
    state !== null &&
    state.length >= STATE_WIDTH &&
    state[0] === LEASED_LETTER &&
    digitsAt(state, 11, 20) === seq &&
    digitsAt(state, 21, 34) === nonce
  );
}

const LEASED_LETTER = LETTER.LEASED.charCodeAt(0);

/**
 * Joins the stored record ("" or absent: none) and state string back into one task
 * record. The state comes as a script returned it: a string, or bytes (read in place,
 * without a string per field).
 */
export function decodeTask(
  id: string,
  record: string | Buffer,
  state: string | Buffer,
  defaultBackoff: BackoffPolicy,
): DecodedState {
  // the fixed part is ASCII; an error's UTF-8 text may follow it
  const fixed =
    typeof state === "string" ? Buffer.from(state.slice(0, STATE_WIDTH), "latin1") : state;
  const st = fixed.length >= STATE_WIDTH ? STATE_OF_CODE.get(fixed[0]!) : undefined;
  if (!st) throw new Error(`task ${id}: malformed state`);
  const until = digitsAt(fixed, 48, 60);
  const task: TaskRecord = {
    id,
    priority: digitsAt(fixed, 2, 2),
    runAt: digitsAt(fixed, 35, 47),
    maxAttempts: digitsAt(fixed, 7, 10),
    attempts: digitsAt(fixed, 3, 6),
    leaseSeq: digitsAt(fixed, 11, 20),
    backoff: defaultBackoff,
    createdAt: idTime(id),
    updatedAt: digitsAt(fixed, 69, 81),
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
  if (state.length > STATE_WIDTH) {
    task.lastError =
      typeof state === "string" ? state.slice(STATE_WIDTH) : state.toString("utf8", STATE_WIDTH);
  }
  if (st === "LEASED") {
    task.leaseDeadline = until;
    task.leaseMs = digitsAt(fixed, 61, 68);
  } else if (st === "COMPLETED" || st === "DEAD") {
    task.doneAt = until;
  }
  return { task, nonce: digitsAt(fixed, 21, 34) };
}
