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

/** Parses a record the scripts wrote. */
export function parseRecord(raw: string | Buffer): TaskRecord {
  const record = JSON.parse(typeof raw === "string" ? raw : raw.toString("utf8")) as TaskRecord;
  // cjson writes an empty table as {}; normalise the optional maps.
  if (record.headers && Object.keys(record.headers).length === 0) delete record.headers;
  return record;
}
