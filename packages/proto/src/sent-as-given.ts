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
 */

/** What the generated code has for every message. */
interface MessageFns<T> {
  encode(message: T): { finish(): Uint8Array };
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
    methods[name] = { ...method, [side]: { encode: type.encode, decode: type.decode } };
  }
  return { ...definition, methods } as unknown as SentAsGiven<D, S, K>;
}
