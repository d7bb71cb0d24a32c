import type { AckItem, EnqueueResult, ExtendItem, NackItem } from "@codeq/proto";

/** Longest nack delay, ms (one day). */
export const MAX_NACK_DELAY_MS = 86_400_000;
/** Largest nack error text, bytes. */
export const MAX_NACK_ERROR_BYTES = 4096;
/** Lease durations a caller may ask for, ms. */
export const LEASE_MS_RANGE = { min: 1000, max: 43_200_000 } as const;

/** Largest task result an ack may carry, bytes (the payload cap's default). */
export const MAX_RESULT_BYTES = 1024 * 1024;

/**
 * The most bytes a task's fields other than its payload take in one request, rounded
 * up: 64 headers of a 128-byte name and a 4096-byte value (the engine's limits), a
 * 128-byte command and tenant, a 256-byte idempotency key, a 4096-byte last error (a
 * moved task's), the backoff, the numbers and their framing.
 */
export const TASK_FIELDS_MAX_BYTES = 288 * 1024;

/**
 * Why a limit on request size is too small for what the service takes, or undefined
 * when it is not: one request must carry the largest single item, a task with a payload
 * of `capBytes` or an ack with a result of MAX_RESULT_BYTES, with the rest of its
 * request at its largest (TASK_FIELDS_MAX_BYTES). Such a limit is refused at start, where
 * otherwise the transport would refuse those requests (RESOURCE_EXHAUSTED) whatever
 * the cap says, or end the stream that carried one. The least limit it allows, 1 MiB +
 * 288 KiB, also holds the mover's largest other requests (1000 idempotency keys).
 */
export function requestLimitProblem(capBytes: number, maxMessageBytes: number): string | undefined {
  const need = Math.max(capBytes, MAX_RESULT_BYTES) + TASK_FIELDS_MAX_BYTES;
  if (need <= maxMessageBytes) return undefined;
  const largest =
    capBytes >= MAX_RESULT_BYTES
      ? `a task with a payload of payloadCapBytes (${capBytes})`
      : `an ack with a result of ${MAX_RESULT_BYTES} bytes (the most a result may be)`;
  const most = maxMessageBytes - TASK_FIELDS_MAX_BYTES;
  const lower =
    capBytes > MAX_RESULT_BYTES && most >= MAX_RESULT_BYTES
      ? `, or lower payloadCapBytes to at most ${most}`
      : "";
  return `maxMessageBytes (${maxMessageBytes}) is too small for ${largest} and the rest of its request (up to ${TASK_FIELDS_MAX_BYTES} bytes): raise it to at least ${need}${lower}`;
}

/** What is wrong with a batch of acks, or undefined. */
export function ackProblem(items: readonly AckItem[]): string | undefined {
  for (const [i, item] of items.entries()) {
    if (item.result.length > MAX_RESULT_BYTES)
      return `items[${i}].result must be at most ${MAX_RESULT_BYTES} bytes, got ${item.result.length}`;
  }
  return undefined;
}

/**
 * What is wrong with a batch of nacks, or undefined. Shared by the shard worker
 * and the router (which checks before it splits a batch across shards).
 */
export function nackProblem(items: readonly NackItem[]): string | undefined {
  for (const [i, item] of items.entries()) {
    if (item.delayMs !== undefined && item.delayMs > MAX_NACK_DELAY_MS)
      return `items[${i}].delay_ms must be at most ${MAX_NACK_DELAY_MS}`;
    if (Buffer.byteLength(item.error) > MAX_NACK_ERROR_BYTES)
      return `items[${i}].error must be at most ${MAX_NACK_ERROR_BYTES} bytes`;
  }
  return undefined;
}

/** What is wrong with a batch of extends, or undefined. */
export function extendProblem(items: readonly ExtendItem[]): string | undefined {
  for (const [i, item] of items.entries()) {
    const ms = item.leaseDurationMs;
    if (ms && (ms < LEASE_MS_RANGE.min || ms > LEASE_MS_RANGE.max))
      return `items[${i}].lease_duration_ms must be ${LEASE_MS_RANGE.min}..${LEASE_MS_RANGE.max}`;
  }
  return undefined;
}

/**
 * What is wrong with one stream message's acks, nacks and extends, or undefined:
 * checked whole before any is applied (the shard's LeaseStream and the router's).
 */
export function settlementsProblem(req: {
  readonly acks: readonly AckItem[];
  readonly nacks: readonly NackItem[];
  readonly extends: readonly ExtendItem[];
}): string | undefined {
  return ackProblem(req.acks) ?? nackProblem(req.nacks) ?? extendProblem(req.extends);
}

/** The per-item results of an enqueue batch that failed as a whole with `status`. */
export function failedEnqueueResults(
  n: number,
  status: { code: number; message: string },
): EnqueueResult[] {
  return Array.from({ length: n }, () => ({ status, taskId: "", duplicate: false, state: 0 }));
}

/**
 * Request metadata a caller (a router) may send to lower the bytes of one answer below
 * the shard's own bound (it can only lower it). An answer under it lists only what
 * fits, possibly nothing, with a page token to go on from.
 */
export const MAX_RESPONSE_BYTES_HEADER = "x-codeq-max-response-bytes";
