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

/** Throws INVALID_ARGUMENT naming the field when a queue name cannot be used. */
export function checkName(field: string, value: string): void {
  if (!NAME_PATTERN.test(value)) {
    throw invalidArgument(
      `${field} must match ${NAME_PATTERN.source} (letters, digits, '_', '.', '-'; 1 to 128), got ${JSON.stringify(value.slice(0, 140))}`,
    );
  }
}

/**
 * Validates a spec and builds the record the enqueue script stores. `where` prefixes
 * every message (e.g. "tasks[3]") so a caller knows which item to fix.
 */
export function buildRecord(
  spec: TaskSpec,
  id: string,
  now: number,
  limits: TaskLimits,
  where = "task",
): TaskRecord {
  const fail = (message: string): never => {
    throw invalidArgument(`${where}: ${message}`);
  };
  const priority = spec.priority ?? 0;
  if (!isInt(priority, 0, PRIORITIES - 1))
    fail(`priority must be an integer 0..9, got ${priority}`);
  const payload = spec.payload ?? new Uint8Array(0);
  if (payload.length > limits.payloadCapBytes) {
    throw new EngineError(
      "RESOURCE_EXHAUSTED",
      `${where}: payload is ${payload.length} bytes; the cap is ${limits.payloadCapBytes}`,
    );
  }
  if (spec.delayMs && spec.runAtMs) fail("set delayMs or runAtMs, not both");
  if (spec.delayMs !== undefined && !isInt(spec.delayMs, 0, MAX_DELAY_MS))
    fail(`delayMs must be 0..${MAX_DELAY_MS}`);
  if (spec.runAtMs !== undefined && !isInt(spec.runAtMs, 0, now + MAX_DELAY_MS))
    fail("runAtMs must be a time within 365 days");
  const maxAttempts = spec.maxAttempts || limits.defaultMaxAttempts;
  if (!isInt(maxAttempts, 1, 1000)) fail(`maxAttempts must be 1..1000, got ${maxAttempts}`);
  const backoff = { ...limits.defaultBackoff, ...spec.backoff };
  if (!KINDS.has(backoff.kind)) fail(`backoff.kind must be fixed, linear or exponential`);
  if (!isInt(backoff.baseMs, 0, MAX_BACKOFF_MS))
    fail(`backoff.baseMs must be 0..${MAX_BACKOFF_MS}`);
  if (!isInt(backoff.maxMs, backoff.baseMs, MAX_BACKOFF_MS))
    fail(`backoff.maxMs must be baseMs..${MAX_BACKOFF_MS}`);
  const idemKey = spec.idempotencyKey || undefined;
  if (
    idemKey !== undefined &&
    (Buffer.byteLength(idemKey) > 256 || /[\u0000-\u001f]/.test(idemKey))
  ) {
    fail("idempotencyKey must be at most 256 bytes without control characters");
  }
  const headers =
    spec.headers && Object.keys(spec.headers).length > 0 ? { ...spec.headers } : undefined;
  if (headers) {
    const entries = Object.entries(headers);
    if (entries.length > MAX_HEADERS) fail(`at most ${MAX_HEADERS} headers, got ${entries.length}`);
    for (const [key, value] of entries) {
      if (key.length === 0 || Buffer.byteLength(key) > 128)
        fail(`header names must be 1..128 bytes`);
      if (typeof value !== "string" || Buffer.byteLength(value) > 4096)
        fail(`header ${key}: values must be strings of at most 4096 bytes`);
    }
  }
  const runAt = spec.delayMs ? now + spec.delayMs : Math.max(spec.runAtMs ?? now, now);
  const record: TaskRecord = {
    id,
    priority,
    runAt,
    maxAttempts,
    attempts: 0,
    leaseSeq: 0,
    backoff: {
      kind: backoff.kind,
      baseMs: backoff.baseMs,
      maxMs: backoff.maxMs,
      jitter: !!backoff.jitter,
    },
    createdAt: now,
    updatedAt: now,
    state: runAt > now ? "SCHEDULED" : "READY",
  };
  if (idemKey !== undefined) record.idemKey = idemKey;
  if (headers) record.headers = headers;
  return record;
}

/**
 * Validates one task of `command` exactly as an enqueue would, without an engine
 * (a router checks a whole batch before splitting it across shards). `where`
 * names the item in the message, e.g. "tasks[3]".
 */
export function checkTask(
  command: string,
  spec: TaskSpec,
  limits: TaskLimits,
  now: number,
  where = "task",
): void {
  checkName(`${where}.command`, command);
  buildRecord(spec, "00000000000000000000000000", now, limits, where);
}
