import { invalidArgument, EngineError } from "./errors";
import { NAME_PATTERN, PRIORITIES } from "./keys";
import type { BackoffPolicy, TaskRecord } from "./task-record";

/** What a producer asks for; every field optional. */
export interface TaskSpec {
  readonly payload?: Uint8Array;
  /** 0..9, default 0. */
  readonly priority?: number;
  /** Ready after this many ms. Exclusive with runAtMs. */
  readonly delayMs?: number;
  /** Ready at this time (ms); in the past means now. */
  readonly runAtMs?: number;
  /** 1..1000, default from the engine's limits. */
  readonly maxAttempts?: number;
  readonly backoff?: Partial<BackoffPolicy>;
  /** At most 256 bytes. */
  readonly idempotencyKey?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

/** Limits and defaults applied to every enqueued task. */
export interface TaskLimits {
  /** Largest payload in bytes. Default 1 MiB. */
  readonly payloadCapBytes: number;
  readonly defaultMaxAttempts: number;
  readonly defaultBackoff: BackoffPolicy;
}

export const DEFAULT_TASK_LIMITS: TaskLimits = Object.freeze({
  payloadCapBytes: 1024 * 1024,
  defaultMaxAttempts: 5,
  defaultBackoff: Object.freeze({
    kind: "exponential",
    baseMs: 1000,
    maxMs: 300_000,
    jitter: true,
  }),
});

const MAX_DELAY_MS = 365 * 24 * 3600 * 1000;
const MAX_BACKOFF_MS = 24 * 3600 * 1000;
const MAX_HEADERS = 64;
const KINDS = new Set(["fixed", "linear", "exponential"]);

function isInt(value: number, min: number, max: number): boolean {
  return Number.isInteger(value) && value >= min && value <= max;
}

/**
 * Throws INVALID_ARGUMENT naming the field when a queue name cannot be used, and the
 * batch item it came from when `where` says so (`ItemName`).
 */
export function checkName(field: string, value: string, where?: ItemName): void {
  if (!NAME_PATTERN.test(value)) {
    throw invalidArgument(
      `${where === undefined ? "" : `${itemName(where)}: `}${field} must match ${NAME_PATTERN.source} (letters, digits, '_', '.', '-'; 1 to 128), got ${JSON.stringify(value.slice(0, 140))}`,
    );
  }
}

/**
 * Names the item a message is about: a string as given ("task"), or an index into a
 * batch (3 → "tasks[3]"), which costs no string until a message needs one.
 */
export type ItemName = string | number;

const itemName = (where: ItemName) => (typeof where === "number" ? `tasks[${where}]` : where);

function refuse(where: ItemName, message: string): never {
  throw invalidArgument(`${itemName(where)}: ${message}`);
}

/**
 * Validates a spec and builds the record the enqueue script stores. `where` prefixes
 * every message (e.g. "tasks[3]", or 3 for it) so a caller knows which item to fix.
 * Called once per task on the enqueue path: it allocates the record and nothing else
 * unless the spec has a backoff or headers of its own.
 */
export function buildRecord(
  spec: TaskSpec,
  id: string,
  now: number,
  limits: TaskLimits,
  where: ItemName = "task",
): TaskRecord {
  const priority = spec.priority ?? 0;
  if (!isInt(priority, 0, PRIORITIES - 1))
    refuse(where, `priority must be an integer 0..9, got ${priority}`);
  const payloadBytes = spec.payload?.length ?? 0;
  if (payloadBytes > limits.payloadCapBytes) {
    throw new EngineError(
      "RESOURCE_EXHAUSTED",
      `${itemName(where)}: payload is ${payloadBytes} bytes; the cap is ${limits.payloadCapBytes}`,
    );
  }
  if (spec.delayMs && spec.runAtMs) refuse(where, "set delayMs or runAtMs, not both");
  if (spec.delayMs !== undefined && !isInt(spec.delayMs, 0, MAX_DELAY_MS))
    refuse(where, `delayMs must be 0..${MAX_DELAY_MS}`);
  if (spec.runAtMs !== undefined && !isInt(spec.runAtMs, 0, now + MAX_DELAY_MS))
    refuse(where, "runAtMs must be a time within 365 days");
  const maxAttempts = spec.maxAttempts || limits.defaultMaxAttempts;
  if (!isInt(maxAttempts, 1, 1000))
    refuse(where, `maxAttempts must be 1..1000, got ${maxAttempts}`);
  const backoff = spec.backoff ? checkBackoff(spec.backoff, limits, where) : limits.defaultBackoff;
  const idemKey = spec.idempotencyKey || undefined;
  if (
    idemKey !== undefined &&
    (Buffer.byteLength(idemKey) > 256 || /[\u0000-\u001f]/.test(idemKey))
  ) {
    refuse(where, "idempotencyKey must be at most 256 bytes without control characters");
  }
  const headers = spec.headers ? checkHeaders(spec.headers, where) : undefined;
  const runAt = spec.delayMs ? now + spec.delayMs : Math.max(spec.runAtMs ?? now, now);
  const record: TaskRecord = {
    id,
    priority,
    runAt,
    maxAttempts,
    attempts: 0,
    leaseSeq: 0,
    backoff,
    createdAt: now,
    updatedAt: now,
    state: runAt > now ? "SCHEDULED" : "READY",
  };
  if (idemKey !== undefined) record.idemKey = idemKey;
  if (headers) record.headers = headers;
  return record;
}

/** A spec's backoff over the default, checked; a policy of its own. */
function checkBackoff(
  given: Partial<BackoffPolicy>,
  limits: TaskLimits,
  where: ItemName,
): BackoffPolicy {
  const backoff = { ...limits.defaultBackoff, ...given };
  if (!KINDS.has(backoff.kind)) refuse(where, `backoff.kind must be fixed, linear or exponential`);
  if (!isInt(backoff.baseMs, 0, MAX_BACKOFF_MS))
    refuse(where, `backoff.baseMs must be 0..${MAX_BACKOFF_MS}`);
  if (!isInt(backoff.maxMs, backoff.baseMs, MAX_BACKOFF_MS))
    refuse(where, `backoff.maxMs must be baseMs..${MAX_BACKOFF_MS}`);
  return {
    kind: backoff.kind,
    baseMs: backoff.baseMs,
    maxMs: backoff.maxMs,
    jitter: !!backoff.jitter,
  };
}

/** A copy of a spec's headers, checked; undefined when there are none. */
function checkHeaders(
  given: Readonly<Record<string, string>>,
  where: ItemName,
): Record<string, string> | undefined {
  const entries = Object.entries(given);
  if (entries.length === 0) return undefined;
  if (entries.length > MAX_HEADERS)
    refuse(where, `at most ${MAX_HEADERS} headers, got ${entries.length}`);
  for (const [key, value] of entries) {
    if (key.length === 0 || Buffer.byteLength(key) > 128)
      refuse(where, `header names must be 1..128 bytes`);
    if (typeof value !== "string" || Buffer.byteLength(value) > 4096)
      refuse(where, `header ${key}: values must be strings of at most 4096 bytes`);
  }
  return { ...given };
}

/**
 * Validates one task of `command` exactly as an enqueue would, without an engine
 * (a router checks a whole batch before splitting it across shards). `where`
 * names the item in the message, e.g. "tasks[3]" (or 3).
 */
export function checkTask(
  command: string,
  spec: TaskSpec,
  limits: TaskLimits,
  now: number,
  where: ItemName = "task",
): void {
  if (!NAME_PATTERN.test(command)) checkName(`${itemName(where)}.command`, command);
  buildRecord(spec, "00000000000000000000000000", now, limits, where);
}
