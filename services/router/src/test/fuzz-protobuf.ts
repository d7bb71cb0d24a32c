import fc from "fast-check";
import { delimited, pb, rawService, tag, varint } from "@codeq/testing";
import { hostileName } from "./fuzz-inputs";

/**
 * Raw protobuf for the router's fuzz tests (fuzz-wire.int.test.ts): what other clients
 * may send and ts-proto never would (wrong wire types, 64-bit values past 2^53, unknown
 * fields, strings that are not UTF-8), bytes that are no protobuf at all, and a client
 * that sends bytes as they are.
 */

/** The protobuf kinds of the request fields, enough to write well-formed messages. */
export type FieldKind =
  "string" | "bytes" | "u32" | "u64" | "i64" | "bool" | "enum" | { readonly message: Schema };
export interface Field {
  readonly no: number;
  readonly kind: FieldKind;
  readonly repeated?: boolean;
}
export type Schema = readonly Field[];

const S = (no: number, repeated = false): Field => ({ no, kind: "string", repeated });
const U32 = (no: number): Field => ({ no, kind: "u32" });
const U64 = (no: number): Field => ({ no, kind: "u64" });
const M = (no: number, message: Schema, repeated = false): Field => ({
  no,
  kind: { message },
  repeated,
});

const BACKOFF: Schema = [{ no: 1, kind: "enum" }, U32(2), U32(3), { no: 4, kind: "bool" }];
const HEADER: Schema = [S(1), S(2)];
const ENQUEUE: Schema = [
  S(1),
  { no: 2, kind: "bytes" },
  U32(3),
  U64(4),
  { no: 5, kind: "i64" },
  U32(6),
  M(7, BACKOFF),
  S(8),
  M(9, HEADER, true),
];
const ACK: Schema = [S(1), { no: 2, kind: "bytes" }];
const NACK: Schema = [S(1), U32(2), S(3), { no: 4, kind: "bool" }];
const EXTEND: Schema = [S(1), U32(2)];
const SUBSCRIPTION: Schema = [S(1, true), U32(2), { no: 3, kind: "bool" }, U32(4)];

/** Request schemas of every QueueService and AdminService method fuzzed, by method name. */
export const REQUEST_SCHEMAS: Record<string, Schema> = {
  Enqueue: ENQUEUE,
  EnqueueBatch: [M(1, ENQUEUE, true)],
  EnqueueStream: [U64(1), M(2, ENQUEUE, true)],
  Lease: [S(1, true), U32(2), U32(3), U32(4), { no: 5, kind: "bool" }],
  LeaseStream: [
    M(1, SUBSCRIPTION),
    U32(2),
    U64(3),
    M(4, ACK, true),
    M(5, NACK, true),
    M(6, EXTEND, true),
  ],
  Ack: [M(1, ACK, true)],
  Nack: [M(1, NACK, true)],
  Extend: [M(1, EXTEND, true)],
  GetTask: [S(1), S(2)],
  QueueStats: [S(1)],
  ListDead: [S(1), U32(2), S(3)],
  RedriveDead: [S(1), S(2, true), U32(3), U32(4)],
  PurgeDead: [S(1), S(2, true), U32(3)],
  AssignCommand: [S(1), S(2), S(3), { no: 4, kind: "bool" }, U64(5)],
  GetMigration: [S(1)],
  ListMigrations: [{ no: 1, kind: "bool" }, S(2), U32(3), S(4)],
  AbortMigration: [S(1)],
  VerifyMigration: [S(1)],
  RegisterShard: [M(1, [S(1), S(2), { no: 3, kind: "enum" }])],
  RemoveShard: [S(1), { no: 2, kind: "bool" }, S(3)],
  SetDefaultShard: [S(1), { no: 2, kind: "bool" }],
  SetShardState: [S(1), { no: 2, kind: "enum" }],
  ListAuditEvents: [U32(1), S(2)],
};

/** 64-bit patterns: past 2^53, the sign bit, all ones (-1 as int64), and anything. */
const varintValue = fc.oneof(
  fc.constantFrom(0n, 1n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n, 2n ** 53n + 1n),
  fc.constantFrom(2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n, -1n, -(2n ** 53n) - 1n),
  fc.bigInt(0n, 2n ** 64n - 1n),
);

const text = fc.oneof(
  fc.string({ maxLength: 12 }),
  hostileName(["AQ", "VQ", "VB"]),
  // not UTF-8: proto3 strings must be, ts-proto decodes them leniently
  fc.constant(Buffer.from([0xff, 0xfe, 0x7b, 0x3a])),
);

/** One well-formed encoding of a value of `kind`; sometimes with another wire type. */
function fieldBytes(no: number, kind: FieldKind, depth: number): fc.Arbitrary<Buffer> {
  // a known field with another wire type is skipped by a parser, like an unknown field
  const asVarint = varintValue.map((v) => Buffer.concat([tag(no, 0), varint(v)]));
  const asFixed = fc.oneof(
    fc.uint8Array({ minLength: 8, maxLength: 8 }).map((b) => Buffer.concat([tag(no, 1), b])),
    fc.uint8Array({ minLength: 4, maxLength: 4 }).map((b) => Buffer.concat([tag(no, 5), b])),
  );
  if (kind === "string" || kind === "bytes") {
    const right = text.map((t) =>
      delimited(no, typeof t === "string" ? Buffer.from(t, "utf8") : t),
    );
    return fc.oneof({ weight: 5, arbitrary: right }, asVarint, asFixed);
  }
  if (typeof kind === "object") {
    const right =
      depth > 2
        ? fc.constant(delimited(no, Buffer.alloc(0)))
        : message(kind.message, depth + 1).map((b) => delimited(no, b));
    return fc.oneof({ weight: 5, arbitrary: right }, asVarint, asFixed);
  }
  const asDelimited = fc.uint8Array({ maxLength: 8 }).map((b) => delimited(no, b));
  return fc.oneof({ weight: 5, arbitrary: asVarint }, asDelimited, asFixed);
}

/** A well-formed message of `schema`: its fields in any order and number, plus unknown ones. */
export function message(schema: Schema, depth = 0): fc.Arbitrary<Buffer> {
  const known = fc
    .constantFrom(...schema)
    .chain((f) =>
      fc.array(fieldBytes(f.no, f.kind, depth), { minLength: 1, maxLength: f.repeated ? 3 : 1 }),
    );
  const unknown = fc
    .tuple(fc.integer({ min: 20, max: 2 ** 29 - 1 }), varintValue)
    .map(([no, v]) => [Buffer.concat([tag(no, 0), varint(v)])]);
  return fc
    .array(fc.oneof({ weight: 6, arbitrary: known }, { weight: 1, arbitrary: unknown }), {
      maxLength: 5,
    })
    .map((parts) => Buffer.concat(parts.flat()));
}

/** Bytes that are not a protobuf message at all (truncated varints, lengths past the end). */
export const garbageBytes = fc.oneof(
  fc.constantFrom(
    Buffer.from([0x0a, 0x05, 0x41]),
    Buffer.from([0x18, 0xff, 0xff]),
    Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]),
    Buffer.from([0x07]),
    Buffer.from([0x0b, 0x0c]),
  ),
  fc.uint8Array({ minLength: 1, maxLength: 32 }).map((b) => Buffer.from(b)),
);

export { pb, rawService };
