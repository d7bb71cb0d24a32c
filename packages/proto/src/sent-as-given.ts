/**
 * nice-grpc sends every message of a ts-proto definition as `encode(fromPartial(m))`:
 * a deep copy of each message before it is encoded, because a handler may return a
 * partial one. On a stream that pushes thousands of tasks a second that copy is a
 * large share of what the process allocates (and so of its garbage-collection
 * pauses). `sentAsGiven` derives a definition whose named methods send their
 * messages as given, with no copy.
 *
 * This is safe only because the types say so: without `fromPartial`, nice-grpc types
 * those messages as the complete message interface, so the compiler refuses a handler
 * (or a caller) that sends one with a field missing. That matters: the generated
 * `encode` writes a missing string field as the text "undefined" and a missing double
 * as NaN rather than failing.
 *
 * Those messages are also encoded into one reused writer. A fresh writer starts with
 * 128 bytes and doubles its buffer as a message grows, so a pushed batch of tasks
 * cost a handful of short-lived ArrayBuffers, each of which the scavenger has to
 * sweep; the reused one has grown once, and each message costs only the copy that
 * `finish()` hands to gRPC.
 */
import { BinaryWriter } from "@bufbuild/protobuf/wire";

/** What the generated code has for every message. */
interface MessageFns<T> {
  encode(message: T, writer?: BinaryWriter): BinaryWriter;
  decode(input: Uint8Array): T;
  fromPartial(object: never): T;
}

/** The same message without `fromPartial`: nice-grpc then takes only complete ones. */
interface CompleteOnly<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(input: Uint8Array): T;
}

type Side = "requestType" | "responseType";

type WithSide<M, S extends Side> =
  M extends Record<S, MessageFns<infer T>> ? Omit<M, S> & Record<S, CompleteOnly<T>> : M;

/** `D` with the `side` messages of the methods in `K` sent as given. */
export type SentAsGiven<
  D extends { methods: object },
  S extends Side,
  K extends keyof D["methods"],
> = Omit<D, "methods"> & {
  methods: {
    [P in keyof D["methods"]]: P extends K ? WithSide<D["methods"][P], S> : D["methods"][P];
  };
};

/**
 * `definition` with the messages on one `side` of each method in `names` (requests a
 * client sends, or responses a server sends) encoded as given.
 */
export function sentAsGiven<
  D extends { methods: object },
  S extends Side,
  K extends keyof D["methods"] & string,
>(definition: D, side: S, names: readonly K[]): SentAsGiven<D, S, K> {
  const methods: Record<string, unknown> = { ...definition.methods };
  for (const name of names) {
    const method = methods[name] as Record<Side, MessageFns<unknown>>;
    const type = method[side];
    const asGiven: CompleteOnly<unknown> = {
      encode: (message) => inReusedWriter((writer) => type.encode(message, writer)),
      decode: type.decode,
    };
    methods[name] = { ...method, [side]: asGiven };
  }
  return { ...definition, methods } as unknown as SentAsGiven<D, S, K>;
}

/** A writer whose buffer has grown past this is dropped after its message. */
const KEEP_BYTES = 256 * 1024;
let reused = new BinaryWriter();

/**
 * Runs one synchronous encode into the reused writer and returns what `finish()`
 * gives: a copy of the bytes, after which the writer is empty again. A writer that
 * an encode threw in, or that a very large message grew, is replaced. (The kept
 * buffer still holds the last message's bytes until the next one overwrites them.)
 */
function inReusedWriter(encode: (writer: BinaryWriter) => BinaryWriter): {
  finish(): Uint8Array;
} {
  const writer = reused;
  let bytes: Uint8Array;
  try {
    bytes = encode(writer).finish();
  } catch (err) {
    reused = new BinaryWriter(); // half-written, and maybe grown by the message that threw
    throw err;
  }
  if (bytes.length > KEEP_BYTES) reused = new BinaryWriter();
  return { finish: () => bytes };
}
