import fc from "fast-check";
import type {
  AckItem,
  BackoffKind,
  BackoffPolicy,
  EnqueueRequest,
  ExtendItem,
  NackItem,
  Subscription,
} from "@codeq/proto";

/**
 * Hostile input for the fuzz tests of the router (fuzz-*.int.test.ts): names that would
 * break the storage key layout, forged and truncated lease tokens, out-of-range
 * numbers, oversized payloads and headers. Raw protobuf a typed client cannot send is
 * in fuzz-protobuf.ts.
 */

const MiB = 1024 * 1024;
const NAME_CHARS = [..."ABZabz09_.-"];
/** Characters the name pattern refuses, several of them part of the key layout. */
const BAD_CHARS = [..."\u0000\n\r\t{}:/*? ~\\[]", "..", "é", "🙂", "\u202e", "\uffff", "\ud800"];

/** Fixed hostile names: empty, too long (129, 100 KB), layout characters, victim look-alikes. */
const NAMED_BAD = [
  "",
  " ",
  "a b",
  "a:b",
  "{a}",
  "a}",
  "{",
  "}",
  ":",
  "/",
  "*",
  "?",
  "\u0000",
  "a\nb",
  "a\r",
  "VQ:victim",
  "VQ:victim:s:a",
  "{VQ:victim:s:a}",
  "VQ:victim:s:a}:tasks",
  "VQ}",
  "*victim*",
  "x".repeat(129),
  "x".repeat(100_000),
  "{".repeat(100_000),
];

/** Names that keep the pattern but are also properties of every JavaScript object. */
const OBJECT_KEYS = ["__proto__", "constructor", "toString", "hasOwnProperty", "valueOf"];

/** Names that keep the pattern: the caller's own queues, possibly named like someone else's. */
const validName = fc.oneof(
  { weight: 9, arbitrary: fc.stringMatching(/^[A-Za-z0-9_.-]{1,12}$/) },
  { weight: 1, arbitrary: fc.constantFrom(...OBJECT_KEYS) },
);

/** A name (command, tenant, shard id, migration id) as a hostile caller would send it. */
export function hostileName(own: readonly string[] = []): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...NAMED_BAD) },
    {
      weight: 3,
      arbitrary: fc
        .array(fc.constantFrom(...NAME_CHARS, ...BAD_CHARS), { minLength: 1, maxLength: 16 })
        .map((parts) => parts.join("")),
    },
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 16 }) },
    {
      weight: 1,
      arbitrary: fc.string({
        unit: fc.constantFrom(...NAME_CHARS),
        minLength: 129,
        maxLength: 300,
      }),
    },
    { weight: 2, arbitrary: validName },
    ...(own.length > 0 ? [{ weight: 2, arbitrary: fc.constantFrom(...own) }] : []),
  );
}

/** What the forged tokens are made of: real tokens and the tasks they name. */
export interface TokenMaterial {
  /** Real lease tokens of another tenant (the victim's). */
  readonly foreign: readonly string[];
  /** Real lease tokens of the caller (settling them may succeed). */
  readonly own: readonly string[];
  /** Task ids of the victim's tasks, with their command. */
  readonly tasks: readonly { readonly command: string; readonly id: string }[];
}

/** Lease tokens: real ones, truncated ones, forged ones of the valid shape, garbage. */
export function hostileToken(m: TokenMaterial): fc.Arbitrary<string> {
  const real = fc.constantFrom(...m.foreign);
  const cut = real.chain((t) => fc.nat({ max: t.length }).map((n) => t.slice(0, n)));
  const forged = fc
    .record({
      shard: fc.constantFrom("a", "b", "c", "zz", "A", "", "a~b"),
      task: fc.constantFrom(...m.tasks),
      tenant: fc.constantFrom("victim", "attacker", "Victim", "victim~x", ""),
      seq: fc.oneof(
        fc.integer({ min: 0, max: 6 }),
        fc.constantFrom(9_999_999_999, 10_000_000_000, -1),
      ),
      nonce: fc.oneof(
        fc.bigInt(0n, 2n ** 46n + 5n).map((n) => n.toString(36)),
        fc.constantFrom("", "0", "zzzzzzzzz", "zzzzzzzzzz", "A", "-1"),
      ),
    })
    .map((f) => `c1~${f.shard}~${f.task.command}~${f.tenant}~${f.task.id}~${f.seq}~${f.nonce}`);
  const edited = fc
    .tuple(
      real,
      fc.constantFrom<(parts: string[]) => string[]>(
        (p) => [...p, "x"],
        (p) => [...p.slice(0, 3), "attacker", ...p.slice(4)],
        (p) => [...p.slice(0, 6), `0${p[6] ?? ""}`],
        (p) => [...p.slice(0, 2), "", ...p.slice(2)],
        (p) => [p[0] ?? "", "b", ...p.slice(2)],
        (p) => p.map((s) => s.toUpperCase()),
      ),
    )
    .map(([token, edit]) => edit(token.split("~")).join("~"));
  const garbage = fc.oneof(
    fc.constantFrom(
      "",
      "~",
      "c1",
      "c1~",
      "c1~a",
      "c1~a~",
      "c2~a~VQ~victim~x~1~1",
      "x".repeat(513),
      `c1~a~${"x".repeat(100_000)}`,
      "c1~a~VQ~victim~\u0000~1~1",
    ),
    fc.string({ unit: "binary", maxLength: 40 }),
  );
  return fc.oneof(
    { weight: 2, arbitrary: real },
    { weight: 3, arbitrary: cut },
    { weight: 3, arbitrary: forged },
    { weight: 2, arbitrary: edited },
    { weight: 2, arbitrary: garbage },
    ...(m.own.length > 0 ? [{ weight: 1, arbitrary: fc.constantFrom(...m.own) }] : []),
  );
}

/** uint32 values: the field's boundaries, the type's, and anything in between. */
export function u32(...edges: number[]): fc.Arbitrary<number> {
  return fc.oneof(
    fc.constantFrom(0, 1, ...edges, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1),
    fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  );
}

/** 64-bit values a typed client can send (|v| ≤ 2^53 - 1); bigger ones go raw. */
function i53(...edges: number[]): fc.Arbitrary<number> {
  return fc.constantFrom(0, 1, ...edges, 2 ** 32, Number.MAX_SAFE_INTEGER);
}

const DAY = 86_400_000;
const YEAR = 365 * DAY;

const payload = fc.oneof(
  { weight: 6, arbitrary: fc.uint8Array({ maxLength: 64 }) },
  { weight: 1, arbitrary: fc.constant(new Uint8Array(MiB + 1)) },
  { weight: 1, arbitrary: fc.constant(new Uint8Array(4 * MiB)) },
);

const THOUSAND_HEADERS = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`h${i}`, "v"]));

const headers = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.dictionary(hostileName(), fc.string({ maxLength: 16 }), { maxKeys: 4 }),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom<Record<string, string>>(
      THOUSAND_HEADERS,
      Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`h${i}`, "v"])),
      { big: "v".repeat(4097) },
      { huge: "v".repeat(100_000) },
      { ["k".repeat(129)]: "v" },
      { "": "v" },
    ),
  },
);

const backoff: fc.Arbitrary<Partial<BackoffPolicy>> = fc.record(
  {
    kind: fc.constantFrom(0, 1, 2, 3, 4, 99, -1).map((k) => k as BackoffKind),
    baseMs: u32(DAY, DAY + 1),
    maxMs: u32(DAY, DAY + 1),
    jitter: fc.boolean(),
  },
  { requiredKeys: [] },
);

/** An EnqueueRequest as a client may write it: any field left out. */
export type EnqueueInput = Omit<Partial<EnqueueRequest>, "backoff"> & {
  backoff?: Partial<BackoffPolicy>;
};

/** One EnqueueRequest with any field out of range (or none: then it is the caller's own task). */
export function enqueueRequest(commands: fc.Arbitrary<string>): fc.Arbitrary<EnqueueInput> {
  return fc.record(
    {
      command: commands,
      payload,
      priority: u32(9, 10),
      delayMs: i53(YEAR, YEAR + 1),
      runAtMs: fc.oneof(i53(), fc.constantFrom(-1, -Number.MAX_SAFE_INTEGER)),
      maxAttempts: u32(1000, 1001),
      backoff,
      idempotencyKey: fc.oneof(
        fc.string({ maxLength: 8 }),
        fc.constantFrom("k".repeat(257), "a\u0000b", "a\nb", "{VQ:victim:s:a}", "victim"),
      ),
      headers,
    },
    { requiredKeys: ["command"] },
  );
}

/** Batches: empty, over the 1000-item limit, and short mixes of good and bad items. */
export function enqueueBatch(item: fc.Arbitrary<EnqueueInput>): fc.Arbitrary<EnqueueInput[]> {
  return fc.oneof(
    { weight: 6, arbitrary: fc.array(item, { minLength: 1, maxLength: 5 }) },
    { weight: 1, arbitrary: fc.constant<never[]>([]) },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom(1000, 1001)
        .map((n) => Array.from({ length: n }, () => ({ command: "AQ" }))),
    },
  );
}

/** Settlement items: a few hostile ones, or more than a call may carry. */
function items<T>(item: fc.Arbitrary<T>, filler: T): fc.Arbitrary<T[]> {
  return fc.oneof(
    { weight: 8, arbitrary: fc.array(item, { minLength: 1, maxLength: 4 }) },
    { weight: 1, arbitrary: fc.constant<never[]>([]) },
    { weight: 1, arbitrary: fc.constant(Array.from({ length: 1001 }, () => filler)) },
  );
}

export function ackItems(token: fc.Arbitrary<string>): fc.Arbitrary<Partial<AckItem>[]> {
  const result = fc.oneof(
    { weight: 6, arbitrary: fc.uint8Array({ maxLength: 16 }) },
    { weight: 1, arbitrary: fc.constant(new Uint8Array(MiB + 1)) },
  );
  return items(fc.record({ leaseToken: token, result }, { requiredKeys: ["leaseToken"] }), {
    leaseToken: "x",
  });
}

export function nackItems(token: fc.Arbitrary<string>): fc.Arbitrary<Partial<NackItem>[]> {
  const item = fc.record(
    {
      leaseToken: token,
      delayMs: fc.option(u32(DAY, DAY + 1), { nil: undefined }),
      error: fc.oneof(
        fc.string({ maxLength: 16 }),
        fc.constantFrom("e".repeat(4097), "e".repeat(100_000), "\u0000\n"),
      ),
      deadLetter: fc.boolean(),
    },
    { requiredKeys: ["leaseToken"] },
  );
  return items(item, { leaseToken: "x" });
}

export function extendItems(token: fc.Arbitrary<string>): fc.Arbitrary<Partial<ExtendItem>[]> {
  const item = fc.record(
    { leaseToken: token, leaseDurationMs: u32(999, 1000, 43_200_000, 43_200_001) },
    { requiredKeys: ["leaseToken"] },
  );
  return items(item, { leaseToken: "x" });
}

/** Command lists: none, one, more than 32, with hostile names among good ones. */
export function commandList(names: fc.Arbitrary<string>): fc.Arbitrary<string[]> {
  return fc.oneof(
    { weight: 6, arbitrary: fc.array(names, { minLength: 1, maxLength: 4 }) },
    { weight: 1, arbitrary: fc.constant<never[]>([]) },
    { weight: 1, arbitrary: fc.constant(Array.from({ length: 33 }, (_, i) => `C${i}`)) },
    { weight: 1, arbitrary: fc.constant(Array.from({ length: 10_000 }, () => "AQ")) },
  );
}

export function subscription(names: fc.Arbitrary<string>): fc.Arbitrary<Partial<Subscription>> {
  return fc.record(
    {
      commands: commandList(names),
      leaseDurationMs: u32(999, 1000, 43_200_000, 43_200_001),
      allTenants: fc.boolean(),
      maxBatch: u32(1000, 1001),
    },
    { requiredKeys: ["commands"] },
  );
}

/** Page tokens: empty, garbage, and well-formed ones pointing anywhere. */
export const pageToken = fc.oneof(
  fc.constant(""),
  fc.string({ maxLength: 24 }),
  fc.constantFrom(
    "x".repeat(100_000),
    "\u0000",
    "o-1",
    "o1e300",
    "o9007199254740993",
    "r1.0.",
    "r1.999.x",
    "r1.0.0:01ARZ3NDEKTSV4RRFFQ69G5FAV",
    "r1.1.99999999999999999:ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
  ),
  fc
    .oneof(
      fc.nat().map((n) => `o${n}`),
      fc.constantFrom("o9007199254740991", "o0x10", "o 12 ", "r1.0.*", "r1.2.", "r1.-1.x"),
      fc
        .tuple(fc.integer({ min: 0, max: 1000 }), fc.string({ maxLength: 40 }))
        .map(([shard, cursor]) => `r1.${shard}.${cursor}`),
    )
    .map((s) => Buffer.from(s, "utf8").toString("base64url")),
);
