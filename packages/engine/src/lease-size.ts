import type { QueueRef } from "./keys";
import { leaseTokenMaxLength } from "./lease-token";
import { ID_WIDTH } from "./task-id";
import type { Delivery } from "./lease";
import type { LeaseOptions } from "./lease-options";

/**
 * The sizes of leased tasks: what a delivery takes in an answer, and which of a lease's
 * deliveries fit its byte bound.
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

/**
 * What a delivery of `queue` takes besides its payload, record and error text, at most:
 * the fixed allowance, its longest possible token, its id and names. The lease script
 * adds this to each task's payload, record and error text to stop at a byte bound
 * (lease-17.lua); being at least `deliveryBytes`' own sum for those, the deliveries it
 * returns rarely pass the bound as `fitting` counts them.
 */
export function fixedDeliveryBytes(shard: string, queue: QueueRef): number {
  return (
    DELIVERY_OVERHEAD +
    leaseTokenMaxLength(shard, queue) +
    ID_WIDTH +
    queue.command.length +
    queue.tenant.length
  );
}

/**
 * How many of `deliveries`, from the first, fit in `options.maxBytes`, and the bytes of
 * those.
 */
export function fitting(deliveries: readonly Delivery[], options: LeaseOptions) {
  let kept = 0;
  for (let i = 0; i < deliveries.length; i++) {
    const size = deliveryBytes(deliveries[i]!);
    if (options.maxBytes !== undefined && kept + size > options.maxBytes) {
      // the first is kept whatever its size, unless told otherwise
      if (i > 0 || options.firstAlways === false) return { n: i, kept };
      return { n: 1, kept: size };
    }
    kept += size;
  }
  return { n: deliveries.length, kept };
}
