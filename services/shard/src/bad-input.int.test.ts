import { ClientError, createChannel, createClient, Metadata, Status } from "nice-grpc";
import { pb, rawService } from "@codeq/testing";
import type { QueueServiceClient } from "@codeq/proto";
import { shardFixture, type ShardFixture } from "./test/fixture";

type Case = [
  name: string,
  call: (c: QueueServiceClient) => Promise<unknown>,
  code: Status,
  message: RegExp,
];

const A = (n: number) => Array.from({ length: n }, () => ({ command: "Q" }) as never);

/** Every RPC with bad input: a clear status, an actionable message, and nothing changed. */
const cases: Case[] = [
  ["Enqueue without command", (c) => c.enqueue({}), Status.INVALID_ARGUMENT, /command is required/],
  [
    "Enqueue with a bad command",
    (c) => c.enqueue({ command: "a:b" }),
    Status.INVALID_ARGUMENT,
    /command must match/,
  ],
  [
    "Enqueue with braces",
    (c) => c.enqueue({ command: "{Q}" }),
    Status.INVALID_ARGUMENT,
    /command must match/,
  ],
  [
    "Enqueue priority 10",
    (c) => c.enqueue({ command: "Q", priority: 10 }),
    Status.INVALID_ARGUMENT,
    /priority must be an integer 0..9/,
  ],
  [
    "Enqueue delay and run-at",
    (c) => c.enqueue({ command: "Q", delayMs: 5, runAtMs: Date.now() + 9 }),
    Status.INVALID_ARGUMENT,
    /not both/,
  ],
  [
    "Enqueue max attempts 1001",
    (c) => c.enqueue({ command: "Q", maxAttempts: 1001 }),
    Status.INVALID_ARGUMENT,
    /maxAttempts/,
  ],
  [
    "Enqueue payload over the cap",
    (c) => c.enqueue({ command: "Q", payload: Buffer.alloc(2049) }),
    Status.RESOURCE_EXHAUSTED,
    /cap is 2048/,
  ],
  [
    "Enqueue with a backoff kind this version does not know",
    (c) =>
      c.enqueue({
        command: "Q",
        backoff: { kind: 42 as never, baseMs: 10, maxMs: 10, jitter: false },
      }),
    Status.INVALID_ARGUMENT,
    /backoff.kind must be/,
  ],
  [
    "Enqueue huge idempotency key",
    (c) => c.enqueue({ command: "Q", idempotencyKey: "k".repeat(300) }),
    Status.INVALID_ARGUMENT,
    /idempotencyKey/,
  ],
  [
    "EnqueueBatch empty",
    (c) => c.enqueueBatch({ tasks: [] }),
    Status.INVALID_ARGUMENT,
    /at least one/,
  ],
  [
    "EnqueueBatch too large",
    (c) => c.enqueueBatch({ tasks: A(51) }),
    Status.INVALID_ARGUMENT,
    /at most 50/,
  ],
  [
    "EnqueueBatch one bad item",
    (c) => c.enqueueBatch({ tasks: [...A(3), { command: "Q", priority: 11 } as never] }),
    Status.INVALID_ARGUMENT,
    /tasks\[3\]/,
  ],
  [
    "Lease without commands",
    (c) => c.lease({ commands: [] }),
    Status.INVALID_ARGUMENT,
    /at least one command/,
  ],
  [
    "Lease bad command",
    (c) => c.lease({ commands: ["Q", "x y"] }),
    Status.INVALID_ARGUMENT,
    /commands\[1\]/,
  ],
  [
    "Lease too many",
    (c) => c.lease({ commands: ["Q"], maxTasks: 51 }),
    Status.INVALID_ARGUMENT,
    /max_tasks must be at most 50/,
  ],
  [
    "Lease wait too long",
    (c) => c.lease({ commands: ["Q"], waitMs: 30_001 }),
    Status.INVALID_ARGUMENT,
    /wait_ms/,
  ],
  [
    "Lease short duration",
    (c) => c.lease({ commands: ["Q"], leaseDurationMs: 999 }),
    Status.INVALID_ARGUMENT,
    /lease_duration_ms/,
  ],
  [
    "Lease all tenants without the right",
    (c) => c.lease({ commands: ["Q"], allTenants: true }),
    Status.PERMISSION_DENIED,
    /cross-tenant-worker/,
  ],
  ["Ack nothing", (c) => c.ack({ items: [] }), Status.INVALID_ARGUMENT, /at least one/],
  [
    "Ack too many",
    (c) =>
      c.ack({
        items: Array.from({ length: 51 }, () => ({ leaseToken: "x", result: Buffer.alloc(0) })),
      }),
    Status.INVALID_ARGUMENT,
    /at most 50/,
  ],
  [
    "Nack delay over a day",
    (c) =>
      c.nack({ items: [{ leaseToken: "x", delayMs: 86_400_001, error: "", deadLetter: false }] }),
    Status.INVALID_ARGUMENT,
    /delay_ms/,
  ],
  [
    "Nack huge error",
    (c) => c.nack({ items: [{ leaseToken: "x", error: "e".repeat(5000), deadLetter: false }] }),
    Status.INVALID_ARGUMENT,
    /4096 bytes/,
  ],
  [
    "Extend duration out of range",
    (c) => c.extend({ items: [{ leaseToken: "x", leaseDurationMs: 10 }] }),
    Status.INVALID_ARGUMENT,
    /lease_duration_ms/,
  ],
  [
    "GetTask bad id",
    (c) => c.getTask({ command: "Q", taskId: "nope" }),
    Status.INVALID_ARGUMENT,
    /task_id/,
  ],
  [
    "GetTask unknown id",
    (c) => c.getTask({ command: "Q", taskId: "01JB0000000000000000000000" }),
    Status.NOT_FOUND,
    /no task/,
  ],
  [
    "QueueStats without command",
    (c) => c.queueStats({ command: "" }),
    Status.INVALID_ARGUMENT,
    /command is required/,
  ],
  [
    "ListDead page too big",
    (c) => c.listDead({ command: "Q", pageSize: 1001 }),
    Status.INVALID_ARGUMENT,
    /page_size/,
  ],
  [
    "ListDead forged page token",
    (c) => c.listDead({ command: "Q", pageToken: "zzz" }),
    Status.INVALID_ARGUMENT,
    /page token/,
  ],
  [
    "RedriveDead too many",
    (c) => c.redriveDead({ command: "Q", maxTasks: 1001 }),
    Status.INVALID_ARGUMENT,
    /max_tasks/,
  ],
  [
    "PurgeDead too many",
    (c) => c.purgeDead({ command: "Q", maxTasks: 10_001 }),
    Status.INVALID_ARGUMENT,
    /max_tasks/,
  ],
  [
    "PurgeDead bad command",
    (c) => c.purgeDead({ command: "q:" }),
    Status.INVALID_ARGUMENT,
    /command must match/,
  ],
];

describe("bad input to every RPC", () => {
  let fx: ShardFixture;
  beforeAll(async () => (fx = await shardFixture({ payloadCapBytes: 2048, maxBatch: 50 })));
  afterAll(() => fx.close());

  it.each(cases)("%s → clear status, nothing changed", async (_name, call, code, message) => {
    const admin = fx.client("bad", "producer,worker,admin");
    const before = (await admin.queueStats({ command: "Q" })).total;
    await expect(call(admin)).rejects.toMatchObject({
      code,
      details: expect.stringMatching(message),
    });
    expect((await admin.queueStats({ command: "Q" })).total).toEqual(before);
  });

  it("requests the decoder refuses are INVALID_ARGUMENT, unary or in a stream, nothing stored", async () => {
    const raw = createClient(
      rawService("codeq.v1.QueueService", {
        Enqueue: { requestStream: false, responseStream: false },
        EnqueueBatch: { requestStream: false, responseStream: false },
        EnqueueStream: { requestStream: true, responseStream: true },
        LeaseStream: { requestStream: true, responseStream: true },
      }),
      createChannel(fx.address),
      { "*": { metadata: new Metadata({ "x-codeq-tenant": "bad", "x-codeq-roles": "producer,worker" }) } },
    ) as unknown as Record<"Enqueue" | "EnqueueBatch", (req: Uint8Array) => Promise<Buffer>> &
      Record<"EnqueueStream" | "LeaseStream", (reqs: AsyncIterable<Uint8Array>) => AsyncIterable<Buffer>>;
    const admin = fx.client("bad", "producer,worker,admin");
    const before = (await admin.queueStats({ command: "Q" })).total;
    // delay_ms (EnqueueRequest field 4) past 2^53, which a JavaScript number cannot hold
    const task = Buffer.concat([pb.bytes(1, "Q"), pb.varint(4, 2n ** 60n)]);
    const refused = async (call: Promise<unknown>) => {
      const err = (await call.then(() => undefined, (e: unknown) => e)) as ClientError;
      expect(err).toBeInstanceOf(ClientError);
      expect(err.code).toBe(Status.INVALID_ARGUMENT);
      expect(err.details).toMatch(/^the request is not a valid message of this method: /);
    };
    const drain = async (answers: AsyncIterable<Buffer>) => {
      for await (const _ of answers);
    };
    async function* one(message: Buffer) {
      yield message;
      await new Promise(() => undefined); // held open: the server must end the call
    }
    await refused(raw.Enqueue(task));
    await refused(raw.EnqueueBatch(pb.bytes(1, task)));
    // EnqueueStreamRequest: seq (field 1) past 2^53, then a task that would be stored
    await refused(drain(raw.EnqueueStream(one(Buffer.concat([pb.varint(1, 2n ** 60n), pb.bytes(2, pb.bytes(1, "Q"))])))));
    // no protobuf at all: a length running past the end
    await refused(drain(raw.LeaseStream(one(Buffer.from([0x0a, 0xff, 0xff])))));
    expect((await admin.queueStats({ command: "Q" })).total).toEqual(before);
  }); // prettier-ignore

  it("a batch read before an undecodable EnqueueStream message is stored and answered", async () => {
    const raw = createClient(
      rawService("codeq.v1.QueueService", { EnqueueStream: { requestStream: true, responseStream: true } }),
      createChannel(fx.address),
      { "*": { metadata: new Metadata({ "x-codeq-tenant": "bad-then", "x-codeq-roles": "producer" }) } },
    ) as unknown as Record<"EnqueueStream", (reqs: AsyncIterable<Uint8Array>) => AsyncIterable<Buffer>>;
    async function* validThenGarbage() {
      yield Buffer.concat([pb.varint(1, 7n), pb.bytes(2, pb.bytes(1, "BT"))]); // seq 7, one task
      yield Buffer.from([0x0a, 0xff, 0xff]); // no message: a length past the end
      await new Promise(() => undefined);
    }
    const answers: Buffer[] = [];
    const err = await (async () => {
      for await (const a of raw.EnqueueStream(validThenGarbage())) answers.push(a);
    })().then(() => undefined, (e: unknown) => e as ClientError);
    expect(err?.code).toBe(Status.INVALID_ARGUMENT);
    // stored, so answered: a producer resends only what got no answer
    expect(answers).toHaveLength(1);
    const stats = await fx.client("bad-then", "producer,worker,admin").queueStats({ command: "BT" });
    expect(stats.total!.ready).toBe(1);
  }); // prettier-ignore

  it("a call without identity is UNAUTHENTICATED", async () => {
    await expect(fx.anonymous().enqueue({ command: "Q" })).rejects.toMatchObject({
      code: Status.UNAUTHENTICATED,
      details: expect.stringMatching(/x-codeq-tenant/),
    });
    await expect(fx.client("a:b").enqueue({ command: "Q" })).rejects.toMatchObject({
      code: Status.UNAUTHENTICATED,
    });
    await expect(fx.client("ok", "superuser").enqueue({ command: "Q" })).rejects.toMatchObject({
      code: Status.UNAUTHENTICATED,
    });
  });

  it("a worker-only identity cannot enqueue; a producer-only identity cannot lease", async () => {
    await expect(fx.client("r", "worker").enqueue({ command: "Q" })).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
    });
    await expect(fx.client("r", "producer").lease({ commands: ["Q"] })).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
    });
  });

  it("without development identity, a router secret or mutual TLS every call is UNAUTHENTICATED", async () => {
    const strict = await shardFixture({ devIdentity: false }, fx.server);
    try {
      await expect(strict.client("t").enqueue({ command: "Q" })).rejects.toMatchObject({
        code: Status.UNAUTHENTICATED,
      });
      // the internal service too: it would list tenants, map keys to tasks, import tasks
      const internal = strict.shardClient();
      await expect(internal.listQueues({ command: "Q" })).rejects.toMatchObject({
        code: Status.UNAUTHENTICATED,
      });
      await expect(
        internal.lookupIdempotencyKeys({ command: "Q", tenant: "t", keys: ["k"] }),
      ).rejects.toMatchObject({ code: Status.UNAUTHENTICATED });
      await expect(internal.interruptLeaseStream({ streamId: "s" })).rejects.toMatchObject({
        code: Status.UNAUTHENTICATED,
      });
      await expect(
        internal.heldTasks({ command: "Q", tenant: "t", migrationId: "m", taskIds: ["x"] }),
      ).rejects.toMatchObject({ code: Status.UNAUTHENTICATED });
    } finally {
      await strict.close();
    }
  });
});
