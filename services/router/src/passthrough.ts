import { type MethodDefinition, type ServiceDefinition } from "nice-grpc";
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
  NackRequest,
  NackResponse,
  QueueServiceDefinition,
} from "@codeq/proto";
import { readBatch } from "./batch-bytes";
import { readStreamAcks } from "./stream-acks";
import { BadRequest, safeDecode } from "@codeq/server-kit";
import {
  decoded,
  keepReceived,
  passThrough,
  Raw,
  receivedBytes,
  scan,
  utf8,
  type MessageType,
} from "./wire-bytes";

/**
 * Messages pass through the router as bytes wherever it does not change them.
 *
 * A router decodes each client request (it must read the routing fields) but, when
 * it forwards that very object to one shard, the shard gets the bytes the client
 * sent, not a re-encoding. Two requests are not even decoded on their common path: an
 * EnqueueBatch is read for its tasks' commands only (BatchBytes, batch-bytes.ts), and a
 * LeaseStream message of acks for its tokens' shard only (StreamAcks, stream-acks.ts).
 * A shard's answer stays bytes (`Raw`) until the router
 * reads a field of it, and goes back to the client as those same bytes when the
 * router returns it unchanged. On the common path (a request for one shard) that
 * saves three of the four protobuf passes per forwarded call, and the copies ts-proto's
 * `fromPartial` makes before every encode.
 */

type TsProtoMethods = (typeof QueueServiceDefinition)["methods"];
type Msg<M, K extends "requestType" | "responseType"> =
  M extends Record<K, MessageType<infer T>> ? T : never;

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
      if (!(decoded instanceof BadRequest)) keepReceived(decoded as object, bytes);
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
      receivedBytes(value) ?? req.encode(req.fromPartial(value)).finish(),
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
  return asField(field, receivedBytes(req) ?? writer.encode(req).finish());
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
  return asField(1, receivedBytes(req) ?? EnqueueBatchRequest.encode(req).finish());
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
