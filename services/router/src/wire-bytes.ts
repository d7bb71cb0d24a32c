/**
 * Protobuf messages as bytes: what the router passes through undecoded (see
 * passthrough.ts), and the byte-level reads that let it.
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

/** Has `message` sent to a shard as `bytes` (the bytes it was read from, or made of). */
export function keepReceived(message: object, bytes: Uint8Array): void {
  received.set(message, bytes);
}

/** The bytes a message is sent as, when it was kept (`keepReceived`). */
export function receivedBytes(message: unknown): Uint8Array | undefined {
  return typeof message === "object" && message !== null ? received.get(message) : undefined;
}

export interface MessageType<T> {
  decode(bytes: Uint8Array): T;
  encode(message: T): { finish(): Uint8Array };
  fromPartial(object: unknown): T;
}

/** A message that may be a passed-through answer, decoded. */
export function decoded<T>(message: T): T {
  return message instanceof Raw ? (message.value as T) : message;
}

/** Hands a shard's answer back to the client as its bytes (typed as the answer it is). */
export function passThrough<T>(raw: Raw<T> | T): T {
  return raw as unknown as T;
}

/** Reads strings as the generated decoders do (a leading byte order mark is kept). */
export const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });

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
export function scan(
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
