import fc from "fast-check";
import { SignJWT } from "jose";
import { createClient, Metadata, Status, type CallOptions } from "nice-grpc";
import {
  AdminServiceDefinition,
  EnqueueRequest,
  EnqueueStreamResponse,
  QueueServiceDefinition,
} from "@codeq/proto";
import { ADMIN_RPCS, adminRpcs } from "./test/fuzz-admin-rpcs";
import { CLEAR, expectClear, expectOwnOnly } from "./test/fuzz-expect";
import { collect, each, fuzzCluster, testAfterwards } from "./test/fuzz-fixture";
import * as P from "./test/fuzz-protobuf";
import { QUEUE_RPCS, queueRpcs } from "./test/fuzz-queue-rpcs";
import {
  admin,
  attacker,
  BUDGET,
  fresh,
  JWT_SECRET,
  opts,
  RAW_RUNS,
  RUNS,
  TOKENS,
  victim,
} from "./test/fuzz-settings";

/**
 * Bad input never hurts (Issue 7, item 5), on the wire: raw protobuf no typed client
 * would send, bytes that are no protobuf at all, and calls without a usable identity.
 * Each answers within its deadline, clearly; the victim's tasks and keys stay exactly as
 * they were. The setup and the checks after every test are in test/fuzz-fixture.ts.
 */

const fx = fuzzCluster();

// ---------------------------------------------------------------------------------------
// Raw protobuf: wrong wire types, 64-bit values past 2^53, unknown fields, non-UTF-8

interface RawMethod {
  readonly service: "codeq.v1.QueueService" | "codeq.v1.AdminService";
  readonly stream: boolean;
  readonly decode: (bytes: Uint8Array) => unknown;
}
const RAW: Record<string, RawMethod> = Object.fromEntries([
  ...Object.values(QueueServiceDefinition.methods).map((m) => [
    m.name,
    {
      service: "codeq.v1.QueueService",
      stream: m.requestStream,
      decode: (b: Uint8Array) => m.responseType.decode(b),
    },
  ]),
  ...Object.values(AdminServiceDefinition.methods).map((m) => [
    m.name,
    {
      service: "codeq.v1.AdminService",
      stream: false,
      decode: (b: Uint8Array) => m.responseType.decode(b),
    },
  ]),
]);

type RawUnary = (req: Uint8Array, o: CallOptions) => Promise<Buffer>;
type RawStream = (reqs: AsyncIterable<Uint8Array>, o: CallOptions) => AsyncIterable<Buffer>;

function rawCall(name: string, messages: readonly Buffer[], o: CallOptions): Promise<Buffer[]> {
  const m = RAW[name]!;
  const client = createClient(
    P.rawService(m.service, { [name]: { requestStream: m.stream, responseStream: m.stream } }),
    fx.channel,
  ) as unknown as Record<string, RawUnary | RawStream>;
  return m.stream
    ? collect((client[name] as RawStream)(each(messages), o))
    : (client[name] as RawUnary)(messages[0]!, o).then((b) => [b]);
}

/** Hand-written raw messages every run tries: values no typed client can send. */
const RAW_EXAMPLES: Record<string, Buffer[][]> = {
  Enqueue: [
    [Buffer.concat([P.pb.bytes(1, "AQ"), P.pb.varint(4, 2n ** 63n)])],
    [Buffer.concat([P.pb.bytes(1, "AQ"), P.pb.varint(5, -(2n ** 62n))])],
  ],
  EnqueueStream: [
    [Buffer.concat([P.pb.varint(1, 2n ** 64n - 1n), P.pb.bytes(2, P.pb.bytes(1, "AQ"))])],
  ],
  LeaseStream: [
    [
      Buffer.concat([P.pb.bytes(1, P.pb.bytes(1, "AQ")), P.pb.varint(2, 1n)]),
      Buffer.concat([P.pb.varint(3, 2n ** 63n), P.pb.bytes(4, P.pb.bytes(1, "x"))]),
    ],
  ],
  AssignCommand: [
    [
      Buffer.concat([
        P.pb.bytes(1, "ZZ"),
        P.pb.bytes(3, "b"),
        P.pb.varint(4, 1n),
        P.pb.varint(5, 2n ** 64n - 1n),
      ]),
    ],
  ],
};

describe("raw messages no typed client would send", () => {
  test.each([...QUEUE_RPCS, ...ADMIN_RPCS])(
    "%s answers well-formed protobuf clearly",
    async (name) => {
      const m = RAW[name]!;
      const who = m.service === "codeq.v1.AdminService" ? admin : attacker;
      const one = P.message(P.REQUEST_SCHEMAS[name]!);
      const messages = m.stream
        ? fc.array(one, { minLength: 1, maxLength: 3 })
        : one.map((b) => [b]);
      await fc.assert(
        fc.asyncProperty(messages, async (bytes) => {
          const out = await fx.answer(`raw ${name}`, (signal) =>
            rawCall(name, bytes, opts(who, signal)),
          );
          if (!out.ok) return expectClear(`raw ${name}`, out.code, out.message);
          if (who === attacker)
            for (const b of out.value) expectOwnOnly(m.decode(b), who.tenant, `raw ${name}`);
        }),
        { numRuns: RAW_RUNS, examples: (RAW_EXAMPLES[name] ?? []).map((x) => [x]), ...BUDGET },
      );
    },
    60_000,
  );

  test("an EnqueueStream task the decoder leaves early hides no more tasks from the router", async () => {
    const task = (payload: string) =>
      EnqueueRequest.encode(
        EnqueueRequest.fromPartial({ command: "SMUGGLE", payload: Buffer.from(payload) }),
      ).finish();
    // a field numbered 0 ends the task for the generated decoder; after it, bytes that an
    // EnqueueStream skips (its seq, with the wrong wire type) and an EnqueueBatch reads as tasks
    const entry = Buffer.concat([task("seen"), Buffer.from([0]), P.pb.bytes(1, task("hidden"))]);
    const message = Buffer.concat([P.pb.varint(1, 1n), P.pb.bytes(2, entry)]);
    const out = await fx.answer("smuggling EnqueueStream", (signal) =>
      rawCall("EnqueueStream", [message], opts(fresh, signal)),
    );
    expect(out.ok).toBe(true);
    if (!out.ok) return;
    expect(out.value.map((b) => EnqueueStreamResponse.decode(b).results.length)).toEqual([1]);
    expect(await fx.heldBy("fresh", "SMUGGLE")).toBe(1);
  });

  test("bytes that are no protobuf at all are refused by the gRPC library, and nothing breaks", async () => {
    // gRPC's status-code table: "Error parsing request proto" is INTERNAL, raised by the library
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...QUEUE_RPCS, ...ADMIN_RPCS),
        P.garbageBytes,
        async (name, bytes) => {
          const who = RAW[name]!.service === "codeq.v1.AdminService" ? admin : attacker;
          const out = await fx.answer(`raw ${name}`, (signal) =>
            rawCall(name, [bytes], opts(who, signal)),
          );
          if (out.ok) return;
          if (out.code === Status.INTERNAL) expect(out.message).toBe("Error deserializing request");
          else expectClear(`raw ${name}`, out.code, out.message);
        },
      ),
      { numRuns: RAW_RUNS * 2, ...BUDGET },
    );
  }, 60_000);
});

// ---------------------------------------------------------------------------------------
// No identity, a garbage one, a hostile signed one; admin RPCs without the right

/** JWTs signed with the router's own secret whose claims are unusable or unusual. */
let signed: { refused: string[]; unusual: string[] };

async function jwt(claims: Record<string, unknown>, sub = "svc-1"): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ ...claims })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(new TextEncoder().encode(JWT_SECRET));
}

beforeAll(async () => {
  const roles = ["producer", "worker"];
  signed = {
    refused: await Promise.all(
      ["victim:x", "{victim}", "", "x".repeat(129), "victim\n", 42, ["victim"], null].map(
        (tenant) => jwt({ tenant, roles }),
      ),
    ),
    unusual: await Promise.all(
      ["José", "a\nb", "x".repeat(10_000), "{victim}:s:a"].map((sub) =>
        jwt({ tenant: "jwtfuzz", roles }, sub),
      ),
    ),
  };
});

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");

function garbageAuthorization(): fc.Arbitrary<Metadata> {
  const printable = fc.string({
    unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
    maxLength: 64,
  });
  const value = fc.oneof(
    fc.constantFrom(
      "",
      "Bearer",
      "Bearer ",
      "Basic dmljdGltOng=",
      `Bearer ${TOKENS.victim}x`,
      `Bearer ${TOKENS.victim.slice(0, -1)}`,
      `Bearer ${TOKENS.victim.toUpperCase()}`,
      `Bearer ${TOKENS.victim} ${TOKENS.victim}`,
      `${TOKENS.victim}`,
      "Bearer a.b.c",
      `Bearer ${b64({ alg: "none" })}.${b64({ tenant: "victim", roles: ["admin"] })}.`,
      `Bearer ${b64({ alg: "HS256" })}.${b64({ tenant: "victim", roles: ["admin"] })}.AAAA`,
      `Bearer ${b64({ alg: "HS256", crit: ["x"] })}.${b64({ tenant: "victim" })}.AAAA`,
      `Bearer ${"x".repeat(8_000)}`,
    ),
    printable.map((s) => `Bearer ${s}`),
    printable,
    fc.constantFrom(...signed.refused).map((t) => `Bearer ${t}`),
  );
  return fc
    .option(value, { nil: undefined })
    .map((v) => new Metadata(v === undefined ? {} : { authorization: v }));
}

describe("without a usable identity", () => {
  test("no credential, or a garbage or forged one, is UNAUTHENTICATED on every RPC", async () => {
    const rpcs = { ...queueRpcs(fx), ...adminRpcs(fx) };
    const call = fc.oneof(
      ...Object.entries(rpcs).map(([name, r]) => fc.tuple(fc.constant(name), r.request)),
    );
    await fc.assert(
      fc.asyncProperty(call, garbageAuthorization(), async ([name, req], metadata) => {
        const out = await fx.answer(name, (signal) => rpcs[name]!.call(req, { metadata, signal }));
        expect(out.ok).toBe(false);
        if (!out.ok) expect(`${name}: ${Status[out.code]}`).toBe(`${name}: UNAUTHENTICATED`);
      }),
      {
        numRuns: RUNS * 2,
        examples: [[["Ack", { items: [] }], new Metadata()]],
        ...BUDGET,
      },
    );
  }, 60_000);

  test("the admin RPCs refuse a tenant's credential: PERMISSION_DENIED", async () => {
    const rpcs = adminRpcs(fx);
    const call = fc.oneof(
      ...Object.entries(rpcs).map(([name, r]) => fc.tuple(fc.constant(name), r.request)),
    );
    await fc.assert(
      fc.asyncProperty(call, fc.constantFrom(attacker, victim), async ([name, req], who) => {
        const out = await fx.answer(name, (signal) => rpcs[name]!.call(req, opts(who, signal)));
        expect(out.ok).toBe(false);
        if (!out.ok) expect(`${name}: ${Status[out.code]}`).toBe(`${name}: PERMISSION_DENIED`);
      }),
      { numRuns: RUNS, ...BUDGET },
    );
  }, 60_000);

  test("a validly signed JWT with an unusual subject works or is refused clearly", async () => {
    const unclear: string[] = [];
    for (const t of signed.unusual) {
      const sub = JSON.stringify(
        JSON.parse(Buffer.from(t.split(".")[1]!, "base64url").toString()).sub,
      );
      const o = (signal: AbortSignal) => ({
        metadata: new Metadata({ authorization: `Bearer ${t}` }),
        signal,
      });
      const calls: [string, (signal: AbortSignal) => Promise<unknown>][] = [
        ["Enqueue", (signal) => fx.q.enqueue({ command: "JQ" }, o(signal))],
        ["Lease", (signal) => fx.q.lease({ commands: ["JQ"] }, o(signal))],
        ["QueueStats", (signal) => fx.q.queueStats({ command: "JQ" }, o(signal))],
      ];
      for (const [name, call] of calls) {
        const out = await fx.answer(name, call);
        if (!out.ok && !CLEAR.has(out.code))
          unclear.push(`${name} with sub ${sub.slice(0, 40)}: ${Status[out.code]}: ${out.message}`);
      }
    }
    expect(unclear).toEqual([]);
  });
});

testAfterwards(fx);
