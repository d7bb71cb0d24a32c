import type { EngineContext } from "./engine-context";
import { queueId, type QueueRef } from "./keys";
import type { Delivery, LeaseOptions } from "./transitions";

/**
 * The sizes of leased tasks: what a delivery takes in an answer, which of a lease's
 * deliveries fit its byte bound, and the queues of large tasks whose leases ask the
 * store for about as many as fit (`EngineContext.taskSizes`).
 */

/** What a delivery takes on the wire besides its payload, headers, texts and token, at most. */
export const DELIVERY_OVERHEAD = 256;

/**
 * About how many bytes a delivery takes in a response (a little more, never less):
 * its payload, headers, idempotency key, last error and token, and a fixed allowance
 * for its numbers, ids and framing.
 */
export function deliveryBytes(d: Delivery): number {
  let n = DELIVERY_OVERHEAD + d.token.length + d.task.payload.length;
  // ids and names are ASCII (their patterns say so): a character is a byte
  n += d.task.id.length + d.task.command.length + d.task.tenant.length;
  if (d.task.idemKey !== undefined) n += Buffer.byteLength(d.task.idemKey);
  if (d.task.lastError !== undefined) n += Buffer.byteLength(d.task.lastError);
  const headers = d.task.headers;
  if (headers)
    for (const key in headers) n += Buffer.byteLength(key) + Buffer.byteLength(headers[key]!) + 8;
  return n;
}

/** Queues whose leased tasks average at least this many bytes have their size remembered. */
const SIZED_BYTES = 4096;
/** Queues whose task size is remembered, at most (past it, the oldest is forgotten). */
const MAX_SIZED_QUEUES = 10_000;

/**
 * `options` with `max` lowered to what `maxBytes` holds at the queue's recent task
 * size: a lease of large tasks then reads from the store about what it may answer,
 * not many times that to give the rest back.
 */
export function sized(ctx: EngineContext, queue: QueueRef, options: LeaseOptions): LeaseOptions {
  if (options.maxBytes === undefined) return options;
  const size = ctx.taskSizes.get(queueId(queue));
  if (size === undefined) return options;
  const max = Math.max(1, Math.min(options.max, Math.floor(options.maxBytes / size)));
  return max === options.max ? options : { ...options, max };
}

/**
 * Remembers `average` as the queue's task size when its tasks are large; a small one
 * forgets it when `leased` (what leases deliver is what counts; an enqueue of small
 * tasks may sit behind a backlog of large ones).
 */
export function noteSize(
  ctx: EngineContext,
  queue: QueueRef,
  average: number,
  leased: boolean,
): void {
  if (average < SIZED_BYTES) {
    if (leased && ctx.taskSizes.size > 0) ctx.taskSizes.delete(queueId(queue));
    return;
  }
  const id = queueId(queue);
  // past the bound the queue remembered longest goes (a Map keeps insertion order)
  if (ctx.taskSizes.size >= MAX_SIZED_QUEUES && !ctx.taskSizes.has(id))
    ctx.taskSizes.delete(ctx.taskSizes.keys().next().value!);
  ctx.taskSizes.set(id, average);
}

/**
 * How many of `deliveries`, from the first, fit in `options.maxBytes`; the bytes of
 * those; and the average size of all.
 */
export function fitting(deliveries: readonly Delivery[], options: LeaseOptions) {
  let bytes = 0;
  let n = deliveries.length;
  let kept = 0;
  for (let i = 0; i < deliveries.length; i++) {
    const size = deliveryBytes(deliveries[i]!);
    if (
      n === deliveries.length &&
      options.maxBytes !== undefined &&
      bytes + size > options.maxBytes
    )
      n = i === 0 && options.firstAlways !== false ? 1 : i;
    bytes += size;
    if (i < n) kept = bytes;
  }
  return { n, kept, average: deliveries.length > 0 ? bytes / deliveries.length : 0 };
}
