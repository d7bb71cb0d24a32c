import {
  ServerError,
  Status,
  type MethodDefinition,
  type ServerMiddleware,
  type ServiceDefinition,
} from "nice-grpc";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import {
  AckRequest,
  AckResponse,
  AdminServiceDefinition,
  EnqueueBatchRequest,
  EnqueueBatchResponse,
  EnqueueRequest,
  EnqueueStreamResponse,
  ExtendRequest,
  ExtendResponse,
  internal,
  ItemStatus,
  LeaseRequest,
  LeaseResponse,
  LeaseStreamRequest,
  LeaseStreamResponse,
  NackRequest,
  NackResponse,
  QueueServiceDefinition,
} from "@codeq/proto";
import { MAX_RESULT_BYTES } from "@codeq/wire";

/**
 * Messages pass through the router as bytes wherever it does not change them.
 *
 * A router decodes each client request (it must read the routing fields) but, when
 * it forwards that very object to one shard, the shard gets the bytes the client
 * sent, not a re-encoding. Two requests are not even decoded on their common path: an
 * EnqueueBatch is read for its tasks' commands only (BatchBytes), and a LeaseStream
 * message of acks for its tokens' shard only (StreamAcks). A shard's answer stays bytes (`Raw`) until the router
 * reads a field of it, and goes back to the client as those same bytes when the
 * router returns it unchanged. On the common path (a request for one shard) that
 * saves three of the four protobuf passes per forwarded call, and the copies ts-proto's
 * `fromPartial` makes before every encode.
 */

/** A message as received from a shard: its bytes, decoded on first use. */
export class Raw<T> {
  private decoded: T | undefined;

  constructor(
    readonly bytes: Uint8Array,
    private readonly type: { decode(bytes: Uint8Array): T },
  ) {}

  get value(): T {
    return (this.decoded ??= this.type.decode(this.bytes));
  }
}

/** The bytes each decoded client request came from (forgotten with the request). */
const received = new WeakMap<object, Uint8Array>();

interface MessageType<T> {
  decode(bytes: Uint8Array): T;
  encode(message: T): { finish(): Uint8Array };
  fromPartial(object: unknown): T;
}

type TsProtoMethods = (typeof QueueServiceDefinition)["methods"];
type Msg<M, K extends "requestType" | "responseType"> =
  M extends Record<K, MessageType<infer T>> ? T : never;

/**
 * A request that could not be decoded (not protobuf, or a 64-bit number beyond what
 * a JavaScript number holds). The router answers it INVALID_ARGUMENT (see
 * `rejectBadRequests`) instead of gRPC's INTERNAL "Error deserializing request".
 */
export class BadRequest {
  constructor(readonly reason: string) {}

  error(): ServerError {
    return new ServerError(
      Status.INVALID_ARGUMENT,
      `the request is not a valid message of this method: ${this.reason.slice(0, 200)}`,
    );
  }
}

function safeDecode(type: MessageType<unknown>, bytes: Uint8Array): unknown {
  try {
    return type.decode(bytes);
  } catch (err) {
    return new BadRequest(err instanceof Error ? err.message : String(err));
  }
}

/** Server middleware answering undecodable requests (unary or in a stream) INVALID_ARGUMENT. */
export function rejectBadRequests(): ServerMiddleware {
  return async function* (call, context) {
    if (call.method.requestStream) {
      const source = call.request as AsyncIterable<unknown>;
      const checked = (async function* () {
        for await (const message of source) {
          if (message instanceof BadRequest) throw message.error();
          yield message;
        }
      })();
      return yield* call.next(checked as typeof call.request, context);
    }
    if (call.request instanceof BadRequest) throw call.request.error();
    return yield* call.next(call.request, context);
  };
}

/**
 * How the router's own server reads requests and writes answers (Raw answers as their
 * bytes). A LeaseStream message that only acks tasks of one shard (and may return
 * credits) is read as StreamAcks, and an EnqueueBatch request as BatchBytes, instead
 * of decoded.
 */
export const routerQueueService = mapMethods(QueueServiceDefinition, (method) => {
  const req = method.requestType as MessageType<unknown>;
  const res = method.responseType as MessageType<unknown>;
  const { leaseStream, enqueueBatch } = QueueServiceDefinition.methods;
  const read =
    method.name === leaseStream.name
      ? readStreamAcks
      : method.name === enqueueBatch.name
        ? readBatch
        : undefined;
  return {
    requestDeserialize: (bytes: Uint8Array) => {
      const value = read?.(bytes);
      if (value) return value;
      const decoded = safeDecode(req, bytes);
      if (!(decoded instanceof BadRequest)) received.set(decoded as object, bytes);
      return decoded;
    },
    requestSerialize: (value: unknown) => req.encode(req.fromPartial(value)).finish(),
    responseSerialize: (value: unknown) =>
      value instanceof Raw ? value.bytes : res.encode(res.fromPartial(value)).finish(),
    responseDeserialize: (bytes: Uint8Array) => res.decode(bytes),
  };
});

/** How the router's clients of shard workers write requests (a received one as its bytes) and read answers (Raw). */
export const shardQueueService = mapMethods(QueueServiceDefinition, (method) => {
  const req = method.requestType as MessageType<unknown>;
  const res = method.responseType as MessageType<unknown>;
  return {
    requestSerialize: (value: unknown) =>
      (typeof value === "object" && value !== null && received.get(value)) ||
      req.encode(req.fromPartial(value)).finish(),
    requestDeserialize: (bytes: Uint8Array) => req.decode(bytes),
    responseSerialize: (value: unknown) => res.encode(res.fromPartial(value)).finish(),
    responseDeserialize: (bytes: Uint8Array) => new Raw(bytes, res),
  };
}) as unknown as {
  [K in keyof TsProtoMethods]: MethodDefinition<
    Partial<Msg<TsProtoMethods[K], "requestType">>,
    Msg<TsProtoMethods[K], "requestType">,
    Msg<TsProtoMethods[K], "responseType">,
    Raw<Msg<TsProtoMethods[K], "responseType">>,
    TsProtoMethods[K]["requestStream"],
    TsProtoMethods[K]["responseStream"]
  >;
};

/** A message that may be a passed-through answer, decoded. */
export function decoded<T>(message: T): T {
  return message instanceof Raw ? (message.value as T) : message;
}

/** Hands a shard's answer back to the client as its bytes (typed as the answer it is). */
export function passThrough<T>(raw: Raw<T> | T): T {
  return raw as unknown as T;
}

/** A shard's answer to one forwarded call (codeq.internal.v1.ForwardResponse), its parts as bytes. */
export interface ForwardAnswer {
  readonly seq: number;
  readonly enqueued?: Raw<EnqueueBatchResponse>;
  readonly acked?: Raw<AckResponse>;
  readonly nacked?: Raw<NackResponse>;
  readonly extended?: Raw<ExtendResponse>;
  readonly leased?: Raw<LeaseResponse>;
  readonly error?: ItemStatus;
  /** Fencing: the map version the shard holds, and the queue's owner under it. */
  readonly mapVersion: number;
  readonly owner: string;
  /** The shard worker drains: send nothing more on this stream (seq 0). */
  readonly draining?: boolean;
}

/** Reads strings as the generated decoders do (a leading byte order mark is kept). */
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });

/** Reads a ForwardResponse, leaving the call's answer as bytes. */
export function readForwardAnswer(bytes: Uint8Array): ForwardAnswer {
  const a: {
    -readonly [K in keyof ForwardAnswer]: ForwardAnswer[K];
  } = { seq: 0, mapVersion: 0, owner: "" };
  scan(bytes, (field, start, end, value) => {
    if (field === 1) a.seq = value;
    else if (field === 4) a.mapVersion = value;
    else if (field === 9) a.draining = value !== 0;
    if (end === undefined) return;
    const part = bytes.subarray(start, end);
    if (field === 2) a.enqueued = new Raw(part, EnqueueBatchResponse);
    else if (field === 3) a.error = ItemStatus.decode(part);
    else if (field === 5) a.owner = utf8.decode(part);
    else if (field === 6) a.acked = new Raw(part, AckResponse);
    else if (field === 7) a.nacked = new Raw(part, NackResponse);
    else if (field === 8) a.extended = new Raw(part, ExtendResponse);
    else if (field === 10) a.leased = new Raw(part, LeaseResponse);
  });
  return a;
}

/** The calls other than enqueues: ForwardRequest's field for each, and its request type. */
const CALL_FIELDS = {
  ack: { field: 7, type: AckRequest },
  nack: { field: 8, type: NackRequest },
  extend: { field: 9, type: ExtendRequest },
  lease: { field: 11, type: LeaseRequest },
} as const;

export type CallKind = keyof typeof CALL_FIELDS;

/** A call as its field of ForwardRequest: the client's request bytes as they came. */
export function forwardedCall(
  kind: CallKind,
  req: AckRequest | NackRequest | ExtendRequest | LeaseRequest,
): Uint8Array {
  const { field, type } = CALL_FIELDS[kind];
  const writer = type as { encode(m: unknown): { finish(): Uint8Array } };
  return asField(field, received.get(req) ?? writer.encode(req).finish());
}

/** Leases to give back, as ForwardRequest's `release`. */
export function forwardedRelease(leaseTokens: string[]): Uint8Array {
  return asField(12, internal.ReleaseRequest.encode({ leaseTokens }).finish());
}

/** `bytes` as length-delimited field `field` of a message. */
function asField(field: number, bytes: Uint8Array): Uint8Array {
  return new BinaryWriter()
    .uint32((field << 3) | 2)
    .bytes(bytes)
    .finish();
}

/**
 * A batch as ForwardRequest's `enqueue`: the client's EnqueueBatchRequest bytes as
 * they came, which the shard reads at the level the router read them.
 */
export function forwardedBatch(req: EnqueueBatchRequest): Uint8Array {
  return asField(1, received.get(req) ?? EnqueueBatchRequest.encode(req).finish());
}

/**
 * The EnqueueStream answer to message `seq` from a shard's EnqueueBatch answer: its
 * result entries as they came, after the seq, when the answer is still bytes; else
 * built from its results. (Only answers take this way, which come from a shard. A
 * client's EnqueueStream tasks are re-encoded for the shard's EnqueueBatch: an entry
 * the generated decoder leaves early, at a field numbered 0, would have the rest of
 * its bytes read as EnqueueStream fields here and as EnqueueBatch tasks there.)
 */
export function streamAnswer(seq: number, answer: EnqueueBatchResponse): EnqueueStreamResponse {
  if (answer instanceof Raw) {
    // seq (field 1), then each result (the answer's field 1) as field 2
    const bytes = answer.bytes;
    const writer = new BinaryWriter();
    if (seq !== 0) writer.uint32(8).uint64(seq);
    let end = 0;
    let other = false;
    scan(bytes, (field, start, stop) => {
      end = stop ?? start;
      if (field === 1 && stop !== undefined) writer.uint32(18).bytes(bytes.subarray(start, stop));
      else other = true;
    });
    // anything else, or bytes that end part way: decoded below instead
    if (!other && end === bytes.length)
      return passThrough(new Raw(writer.finish(), EnqueueStreamResponse));
  }
  return { seq, results: decoded(answer).results };
}

/**
 * One task as ForwardRequest's `enqueue`: a batch of one, re-encoded. Not the
 * client's bytes: read one level deeper than the router read them, bytes the
 * generated decoder stops early in (a field numbered 0) could carry more tasks.
 */
export function forwardedTask(req: EnqueueRequest): Uint8Array {
  return asField(1, asField(1, EnqueueRequest.encode(req).finish()));
}

/**
 * An EnqueueBatch request read for routing only: each task's command, from the bytes.
 * Its tasks are decoded when something reads them (a batch split across shards, or
 * one checked whole here); a batch that goes to one shard goes on as the bytes the
 * client sent and is never decoded by the router. Read strictly (`readBatch`): a
 * request the generated decoder could read differently is decoded as usual, so the
 * router routes by the commands the shard will read.
 */
export class BatchBytes implements EnqueueBatchRequest {
  private decoded: EnqueueRequest[] | undefined;

  constructor(
    readonly bytes: Uint8Array,
    /** The tasks' commands, in order. */
    readonly commands: readonly string[],
  ) {
    received.set(this, bytes);
  }

  /**
   * The tasks, decoded on first use. Bytes the generated decoder refuses (a number
   * beyond 2^53, a malformed part of a task) are the caller's bad input, as for any
   * request (INVALID_ARGUMENT); a batch that goes on as bytes gets the same from the
   * shard, which decodes each forwarded call apart.
   */
  get tasks(): EnqueueRequest[] {
    if (this.decoded) return this.decoded;
    const value = safeDecode(EnqueueBatchRequest, this.bytes);
    if (value instanceof BadRequest) throw value.error();
    return (this.decoded = (value as EnqueueBatchRequest).tasks);
  }

  /** This request, once its bytes are known to decode (INVALID_ARGUMENT otherwise). */
  checked(): this {
    void this.tasks;
    return this;
  }
}

/** A batch's commands, in order, without decoding a BatchBytes. */
export function batchCommands(req: EnqueueBatchRequest): readonly string[] {
  return req instanceof BatchBytes ? req.commands : req.tasks.map((t) => t.command);
}

const TASK_TAG = (1 << 3) | 2;
const COMMAND_TAG = (1 << 3) | 2;

/**
 * `bytes` as BatchBytes, or undefined (decode it) when the request has a field other
 * than its tasks, a task has no command, its command twice or in another encoding, a
 * field numbered 0 (where the generated decoder stops reading it), a group, or bytes
 * that end part way.
 */
export function readBatch(bytes: Uint8Array): BatchBytes | undefined {
  const commands: string[] = [];
  let plain = true;
  const complete = scan(bytes, (_field, start, end, _value, tagStart) => {
    if (!plain) return;
    const command =
      bytes[tagStart] === TASK_TAG && end !== undefined
        ? taskCommand(bytes.subarray(start, end))
        : undefined;
    if (command === undefined) plain = false;
    else commands.push(command);
  });
  return complete && plain ? new BatchBytes(bytes, commands) : undefined;
}

/** EnqueueRequest's fields that are messages: backoff (7) and each headers entry (9). */
const TASK_MESSAGE_FIELDS = new Set([7, 9]);

/**
 * An EnqueueRequest's command, read as the generated decoder reads it; undefined when
 * unsure. The messages in a task are walked too: the decoder leaves one early at a
 * field numbered 0 or a group's end and reads on from there as the task's own fields,
 * which could hold another command, or more tasks.
 */
function taskCommand(task: Uint8Array): string | undefined {
  let command: Uint8Array | undefined;
  let plain = true;
  const complete = scan(task, (field, start, end, _value, tagStart) => {
    if (field === 0) plain = false;
    else if (field === 1) {
      if (task[tagStart] === COMMAND_TAG && end !== undefined && command === undefined)
        command = task.subarray(start, end);
      else plain = false;
    } else if (TASK_MESSAGE_FIELDS.has(field) && end !== undefined) {
      if (!flat(task.subarray(start, end))) plain = false;
    }
  });
  return complete && plain && command !== undefined ? utf8.decode(command) : undefined;
}

/** A message the generated decoder reads to its end: no field numbered 0, no group, no bytes left over. */
function flat(message: Uint8Array): boolean {
  let plain = true;
  const complete = scan(message, (field) => {
    if (field === 0) plain = false;
  });
  return complete && plain;
}

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
/** "c1~": a lease token's version; its shard follows, up to the next "~" (lease-token.ts). */
const TOKEN_VERSION = [0x63, 0x31, 0x7e];
const TILDE = 0x7e;

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
  if (!complete || !plain || token === undefined) return undefined;
  if (TOKEN_VERSION.some((b, i) => token![i] !== b)) return undefined;
  const end = token.indexOf(TILDE, TOKEN_VERSION.length);
  return end > TOKEN_VERSION.length ? token.subarray(TOKEN_VERSION.length, end) : undefined;
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
  received.set(message, bytes);
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

/** The router's AdminService: the generated codecs, with undecodable requests answered INVALID_ARGUMENT. */
export const routerAdminService = mapMethods(AdminServiceDefinition, (method) => {
  const req = method.requestType as MessageType<unknown>;
  const res = method.responseType as MessageType<unknown>;
  return {
    requestDeserialize: (bytes: Uint8Array) => safeDecode(req, bytes),
    requestSerialize: (value: unknown) => req.encode(req.fromPartial(value)).finish(),
    responseSerialize: (value: unknown) => res.encode(res.fromPartial(value)).finish(),
    responseDeserialize: (bytes: Uint8Array) => res.decode(bytes),
  };
});

interface TsProtoService {
  readonly fullName: string;
  readonly methods: Record<
    string,
    {
      readonly name: string;
      readonly requestType: unknown;
      readonly responseType: unknown;
      readonly requestStream: boolean;
      readonly responseStream: boolean;
    }
  >;
}

type TsProtoMethod = TsProtoService["methods"][string];

function mapMethods(
  definition: TsProtoService,
  codec: (
    method: TsProtoMethod,
  ) => Pick<
    MethodDefinition<unknown, unknown, unknown, unknown>,
    "requestSerialize" | "requestDeserialize" | "responseSerialize" | "responseDeserialize"
  >,
): ServiceDefinition {
  const out: ServiceDefinition = {};
  for (const [key, method] of Object.entries(definition.methods)) {
    out[key] = {
      path: `/${definition.fullName}/${method.name}`,
      requestStream: method.requestStream,
      responseStream: method.responseStream,
      options: {},
      ...codec(method),
    };
  }
  return out;
}

/**
 * The bytes `message` takes as one element of a repeated message field: its encoding,
 * and the field's tag and length (6 bytes allowed for both, the most they take here).
 */
export function elementBytes<T>(
  type: { encode(message: T): { finish(): Uint8Array } },
  message: T,
): number {
  return type.encode(message).finish().length + 6;
}

/**
 * How many times field `field` occurs at the top level of a protobuf message, read
 * without decoding it (e.g. the tasks of a LeaseResponse); malformed bytes end the count.
 */
export function countField(bytes: Uint8Array, field: number): number {
  let count = 0;
  scan(bytes, (f) => {
    if (f === field) count++;
  });
  return count;
}

/** The bytes of the first embedded message in field `field` at the top level, if any. */
export function embedded(bytes: Uint8Array, field: number): Uint8Array | undefined {
  let found: Uint8Array | undefined;
  scan(bytes, (f, start, end) => {
    if (f === field && found === undefined && end !== undefined) found = bytes.subarray(start, end);
  });
  return found;
}

/**
 * Walks the top-level fields of a protobuf message, telling `visit` each field
 * number (and, for length-delimited ones, where its bytes are; for varints, the
 * value, exact up to 2^53), and where the field's tag starts. Stops quietly at
 * malformed bytes (or groups, which no message of ours has); returns whether it read
 * the message to its end.
 */
function scan(
  bytes: Uint8Array,
  visit: (
    field: number,
    start: number,
    end: number | undefined,
    value: number,
    tagStart: number,
  ) => void,
): boolean {
  let i = 0;
  const varint = (): number => {
    let value = 0;
    let shift = 0;
    for (;;) {
      if (i >= bytes.length) return -1;
      const b = bytes[i++]!;
      value += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return value;
      shift += 7;
      if (shift > 63) return -1;
    }
  };
  while (i < bytes.length) {
    const tagStart = i;
    const tag = varint();
    // a generated decoder reads a tag as 32 bits: a longer one it reads as another field
    if (tag < 0 || tag > 0xffffffff) return false;
    const field = Math.floor(tag / 8);
    switch (tag & 7) {
      case 0: {
        const value = varint();
        if (value < 0) return false;
        visit(field, i, undefined, value, tagStart);
        break;
      }
      case 1:
        i += 8;
        visit(field, i, undefined, 0, tagStart);
        break;
      case 2: {
        const length = varint();
        if (length < 0 || i + length > bytes.length) return false;
        visit(field, i, i + length, 0, tagStart);
        i += length;
        break;
      }
      case 5:
        i += 4;
        visit(field, i, undefined, 0, tagStart);
        break;
      default:
        return false;
    }
  }
  return i === bytes.length;
}
