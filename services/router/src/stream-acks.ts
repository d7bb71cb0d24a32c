import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { Status } from "nice-grpc";
import { LeaseStreamRequest, LeaseStreamResponse } from "@codeq/proto";
import { leaseTokenShardBytes } from "@codeq/engine";
import { MAX_RESULT_BYTES } from "@codeq/wire";
import { embedded, keepReceived, passThrough, Raw, scan, utf8 } from "./wire-bytes";

/**
 * A LeaseStream message that acks tasks of one shard and may return credits, and
 * holds nothing else: what a worker sends after each push. The router reads it as
 * bytes (`readStreamAcks`) and sends its acks on to that shard's stream as they came,
 * under a request id of its own (`forwardedAcks`); the shard's answer goes back to the
 * client as bytes, under the client's request id (`settledAnswer`). That saves the
 * decoding and encoding of every ack and every result both ways, on the path each
 * task a worker takes through the router goes.
 */
export class StreamAcks {
  constructor(
    /** The whole message as received (decoded when it cannot go this way after all). */
    readonly bytes: Uint8Array,
    readonly requestId: number,
    readonly credits: number,
    /** How many acks there are; each token names `shard`. */
    readonly count: number,
    readonly shard: string,
    /** The acks, field by field as they came (tags included). */
    readonly acks: Uint8Array,
  ) {}

  /** The message as the generated decoder reads it. */
  decode(): LeaseStreamRequest {
    return LeaseStreamRequest.decode(this.bytes);
  }
}

/** Tags (field << 3 | wire type) of the fields StreamAcks reads: all one byte. */
const CREDITS_TAG = (2 << 3) | 0;
const REQUEST_ID_TAG = (3 << 3) | 0;
const ACKS_TAG = (4 << 3) | 2;
const TOKEN_TAG = (1 << 3) | 2;
const RESULT_TAG = (2 << 3) | 2;
const SETTLED_TAG = (3 << 3) | 2;

/**
 * `bytes` as StreamAcks, or undefined for any other message: one with a field other
 * than credits, request_id and acks, a field in another encoding than a generated
 * encoder's (a longer tag, a repeated scalar, acks not side by side), values a decoder
 * would not take as they are (credits over 32 bits, a request id over 2^53), no acks,
 * a result over MAX_RESULT_BYTES, or tokens that do not all name one shard. Those are
 * decoded, and checked, as every other message is.
 */
export function readStreamAcks(bytes: Uint8Array): StreamAcks | undefined {
  let requestId: number | undefined;
  let credits: number | undefined;
  let count = 0;
  let acksStart = -1;
  let acksEnd = -1;
  let shard: Uint8Array | undefined;
  let plain = true;
  const complete = scan(bytes, (field, start, end, value, tagStart) => {
    if (!plain) return;
    const tag = bytes[tagStart];
    if (tag === CREDITS_TAG && credits === undefined && value <= 0xffffffff) credits = value;
    else if (tag === REQUEST_ID_TAG && requestId === undefined && value <= Number.MAX_SAFE_INTEGER)
      requestId = value;
    else if (tag === ACKS_TAG && end !== undefined && (acksEnd < 0 || acksEnd === tagStart)) {
      const named = tokenShard(bytes.subarray(start, end));
      if (!named || (shard !== undefined && !sameBytes(named, shard))) plain = false;
      shard ??= named;
      if (acksStart < 0) acksStart = tagStart;
      acksEnd = end;
      count++;
    } else plain = false;
  });
  if (!complete || !plain || count === 0 || shard === undefined) return undefined;
  return new StreamAcks(
    bytes,
    requestId ?? 0,
    credits ?? 0,
    count,
    utf8.decode(shard),
    bytes.subarray(acksStart, acksEnd),
  );
}

/** The shard an AckItem's token names, as bytes; undefined for an item not as StreamAcks takes it. */
function tokenShard(item: Uint8Array): Uint8Array | undefined {
  let token: Uint8Array | undefined;
  let result = false;
  let plain = true;
  const complete = scan(item, (_field, start, end, _value, tagStart) => {
    const tag = item[tagStart];
    if (tag === TOKEN_TAG && end !== undefined && token === undefined)
      token = item.subarray(start, end);
    else if (tag === RESULT_TAG && end !== undefined && !result && end - start <= MAX_RESULT_BYTES)
      result = true;
    else plain = false;
  });
  return complete && plain && token !== undefined ? leaseTokenShardBytes(token) : undefined;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A LeaseStreamRequest of `acks` (StreamAcks.acks) under `requestId`, sent as those bytes. */
export function forwardedAcks(requestId: number, acks: Uint8Array): Partial<LeaseStreamRequest> {
  const bytes = new BinaryWriter().uint32(REQUEST_ID_TAG).uint64(requestId).raw(acks).finish();
  const message: Partial<LeaseStreamRequest> = {};
  keepReceived(message, bytes);
  return message;
}

/**
 * A shard's LeaseStreamResponse when it is an answer to settlements: its request id,
 * and its SettleResult as bytes. Undefined for any other message, and for one that
 * does not read to its end (decoded instead, it fails the shard's stream).
 */
export function readSettled(
  response: Uint8Array,
): { readonly requestId: number; readonly settled: Uint8Array } | undefined {
  const settled = embedded(response, SETTLED_TAG >> 3);
  if (settled === undefined) return undefined;
  let requestId = 0;
  const complete = scan(settled, (field, _start, end, value) => {
    if (field === 1 && end === undefined) requestId = value;
  });
  return complete ? { requestId, settled } : undefined;
}

/**
 * The client's LeaseStreamResponse of a shard's SettleResult (bytes), under the
 * client's request id; undefined when those bytes are malformed.
 */
export function settledAnswer(
  requestId: number,
  settled: Uint8Array,
): LeaseStreamResponse | undefined {
  const inner = new BinaryWriter();
  if (requestId !== 0) inner.uint32(8).uint64(requestId);
  // every field but the shard's request id, as it came
  const complete = scan(settled, (field, start, end, _value, tagStart) => {
    if (field !== 1) inner.raw(settled.subarray(tagStart, end ?? start));
  });
  if (!complete) return undefined;
  const bytes = new BinaryWriter().uint32(SETTLED_TAG).bytes(inner.finish()).finish();
  return passThrough(new Raw(bytes, LeaseStreamResponse));
}

/**
 * Statuses of a settlement item that say it may not have been applied (the shard was
 * away, the call was cut): the lease may still be held, and the client sends the item
 * again. Any other status means the lease is no longer held through the stream.
 */
export const UNSETTLED_CODES: ReadonlySet<number> = new Set([
  Status.UNAVAILABLE,
  Status.DEADLINE_EXCEEDED,
  Status.CANCELLED,
  Status.ABORTED,
  Status.INTERNAL,
  Status.UNKNOWN,
]);

/**
 * How many acks and nacks of a SettleResult (bytes) ended their lease: those whose
 * status is not in UNSETTLED_CODES.
 */
export function settledItems(settled: Uint8Array): number {
  let n = 0;
  scan(settled, (field, start, end) => {
    if ((field !== 2 && field !== 3) || end === undefined) return;
    let code = 0; // absent: OK
    scan(settled.subarray(start, end), (f, _s, e, value) => {
      if (f === 1 && e === undefined) code = value;
    });
    if (!UNSETTLED_CODES.has(code)) n++;
  });
  return n;
}
