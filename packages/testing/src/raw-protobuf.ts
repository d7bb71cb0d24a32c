import type { MethodDefinition } from "nice-grpc";

/**
 * Protobuf written by hand, for tests that send what other clients may and ts-proto
 * never would (64-bit values past 2^53, wrong wire types, unknown fields), and a client
 * definition that sends such bytes as they are.
 */

/** A base-128 varint of `value` taken as 64 bits (a negative one as its two's complement). */
export function varint(value: bigint): Buffer {
  let v = BigInt.asUintN(64, value);
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) byte |= 0x80;
    out.push(byte);
  } while (v !== 0n);
  return Buffer.from(out);
}

/** A field's key: its number and wire type (0 varint, 2 length-delimited). */
export const tag = (no: number, wire: number): Buffer => varint(BigInt((no << 3) | wire));

/** A length-delimited field. */
export const delimited = (no: number, body: Uint8Array): Buffer =>
  Buffer.concat([tag(no, 2), varint(BigInt(body.length)), body]);

/** Single fields, for hand-written examples. */
export const pb = {
  varint: (no: number, value: bigint) => Buffer.concat([tag(no, 0), varint(value)]),
  bytes: (no: number, value: string | Uint8Array) =>
    delimited(no, typeof value === "string" ? Buffer.from(value, "utf8") : value),
};

export type RawMethod = MethodDefinition<Uint8Array, Buffer, Uint8Array, Buffer, boolean, boolean>;

/** A client definition of `service` sending and receiving bytes as they are. */
export function rawService(
  service: string,
  methods: Record<string, { requestStream: boolean; responseStream: boolean }>,
): Record<string, RawMethod> {
  const raw = (b: Uint8Array) => Buffer.from(b);
  return Object.fromEntries(
    Object.entries(methods).map(([name, m]) => [
      name,
      {
        path: `/${service}/${name}`,
        requestStream: m.requestStream,
        responseStream: m.responseStream,
        requestSerialize: raw,
        requestDeserialize: raw,
        responseSerialize: raw,
        responseDeserialize: raw,
        options: {},
      },
    ]),
  );
}
