import {
  ClientError,
  createChannel,
  createClient,
  createServer,
  Metadata,
  Status,
  type CallContext,
} from "nice-grpc";
import {
  EnqueueBatchRequest,
  EnqueueBatchResponse,
  QueueServiceDefinition,
  type EnqueueRequest,
} from "@codeq/proto";
import { freePort, RedisServer } from "@codeq/testing";
import { clusterPerTest, routerCluster, within, type RouterCluster } from "./test/cluster";
import { LANE_MAX_BYTES } from "./routing";
import { forwardService } from "./forward-lane";
import type { RouterConfig } from "./config";
import * as P from "./test/fuzz-protobuf";

/**
 * Enqueues and settlements reach shard workers as messages on their Forward
 * streams (see forward-lane.ts): one stream per router channel carries every
 * caller's calls, each stating its caller, and is answered per call.
 */

const cluster = clusterPerTest({ commands: { X: "a", Y: "b" }, shard: { mover: false } });
let rc: RouterCluster;
beforeEach(() => (rc = cluster()));

const payload = (s: string) => Buffer.from(s);
const stats = (shard: string, command: string, tenant: string) =>
  rc.workers.get(shard)!.engine.stats({ command, tenant });

async function metrics(): Promise<string> {
  return fetch(`http://127.0.0.1:${rc.router.metricsPort}/metrics`).then((r) => r.text());
}

/** codeq_router_forwarded_total for `shard`, `call` and `path`, 0 when absent. */
async function forwarded(
  shard: string,
  path: "stream" | "call" | "refused",
  call: "enqueue" | "ack" | "nack" | "extend" | "lease" = "enqueue",
): Promise<number> {
  const m = new RegExp(
    `codeq_router_forwarded_total\\{shard="${shard}",call="${call}",path="${path}"\\} (\\d+)`,
  ).exec(await metrics());
  return m ? Number(m[1]) : 0;
}

/** A cluster a test made in place of its first (which clusterPerTest closes). */
let replaced: RouterCluster | undefined;
afterEach(async () => {
  await replaced?.close();
  replaced = undefined;
});

/** The test's cluster again (X on a), its router with `settings`. */
async function routerWith(settings: Partial<RouterConfig>): Promise<void> {
  replaced = await routerCluster({
    server: rc.server,
    commands: { X: "a" },
    shard: { mover: false },
    router: settings,
  });
  rc = replaced;
}

/** The test's cluster again, with a router that waits for a shard's answer only 200 ms. */
const impatientRouter = () => routerWith({ shardTimeoutMs: 200 });

/** The store answers no one (the shard workers included) for `ms`. */
async function pauseStore(redis: ReturnType<RedisServer["client"]>, ms: number): Promise<void> {
  await redis.call("CLIENT", "PAUSE", String(ms));
}

async function failure(p: Promise<unknown>): Promise<ClientError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ClientError);
  return err as ClientError;
}

test("every way of enqueueing goes on the shards' streams, each batch as its own caller's", async () => {
  const [t1, t2] = [rc.client("t1"), rc.client("t2")];
  // many callers at once, on the same few streams; each gets its own task's id
  const one = (c: typeof t1, tenant: string, i: number) =>
    c.enqueue({ command: "X", payload: payload(`${tenant}-${i}`) }).then(async ({ taskId }) => {
      const task = await rc.workers.get("a")!.engine.getTask({ command: "X", tenant }, taskId);
      expect(Buffer.from(task!.payload).toString()).toBe(`${tenant}-${i}`);
    });
  await Promise.all([
    ...Array.from({ length: 20 }, (_, i) => one(t1, "t1", i)),
    ...Array.from({ length: 20 }, (_, i) => one(t2, "t2", i)),
    t1.enqueueBatch({ tasks: [{ command: "Y" }, { command: "Y" }] as never }),
    // split over both shards
    t2.enqueueBatch({ tasks: [{ command: "X" }, { command: "Y" }, { command: "X" }] as never }),
  ]);
  const answers: number[] = [];
  for await (const r of t1.enqueueStream(
    (async function* () {
      yield { seq: 7, tasks: [{ command: "X" }, { command: "Y" }] as never };
    })(),
  ))
    answers.push(...r.results.map((x) => x.status!.code));
  expect(answers).toEqual([0, 0]);

  expect((await stats("a", "X", "t1")).ready).toBe(21);
  expect((await stats("a", "X", "t2")).ready).toBe(22);
  expect((await stats("b", "Y", "t1")).ready).toBe(3);
  expect((await stats("b", "Y", "t2")).ready).toBe(1);
  expect(await forwarded("a", "stream")).toBe(20 + 20 + 1 + 1);
  expect(await forwarded("b", "stream")).toBe(1 + 1 + 1);
  expect(await forwarded("a", "call")).toBe(0);
  expect(await forwarded("b", "call")).toBe(0);
});

test("a batch too large to share a stream goes as a call of its own", async () => {
  const c = rc.client("t1");
  const big = Buffer.alloc(LANE_MAX_BYTES, 1);
  expect((await c.enqueue({ command: "X", payload: big })).taskId).toHaveLength(26);
  const batch = await c.enqueueBatch({
    tasks: [
      { command: "X", payload: big.subarray(0, LANE_MAX_BYTES / 2) },
      { command: "X", payload: big.subarray(0, LANE_MAX_BYTES / 2) },
    ] as never,
  });
  expect(batch.results.map((r) => r.status!.code)).toEqual([0, 0]);
  await c.enqueue({ command: "X", payload: payload("small") });
  expect((await stats("a", "X", "t1")).ready).toBe(4);
  expect(await forwarded("a", "call")).toBe(2);
  expect(await forwarded("a", "stream")).toBe(1);
});

test("the shard applies each batch's caller's rights and checks, batch by batch", async () => {
  const worker = rc.client("t1", "worker"); // no producer role
  expect((await failure(worker.enqueue({ command: "X" }))).code).toBe(Status.PERMISSION_DENIED);
  expect((await failure(worker.enqueueBatch({ tasks: [{ command: "X" }] as never }))).code).toBe(
    Status.PERMISSION_DENIED,
  );
  const producer = rc.client("t1", "producer");
  const bad = producer.enqueue({ command: "X", priority: 10 });
  expect((await failure(bad)).code).toBe(Status.INVALID_ARGUMENT);
  // the same streams go on serving
  expect((await producer.enqueue({ command: "X" })).taskId).toHaveLength(26);
  expect((await stats("a", "X", "t1")).ready).toBe(1);
});

test("fields a client adds to its batch never state who is calling", async () => {
  const channel = createChannel(`127.0.0.1:${rc.router.port}`);
  try {
    const raw = createClient(
      P.rawService("codeq.v1.QueueService", {
        EnqueueBatch: { requestStream: false, responseStream: false },
      }),
      channel,
    ) as unknown as {
      EnqueueBatch(req: Uint8Array, o: object): Promise<Buffer>;
    };
    const batch = Buffer.from(
      EnqueueBatchRequest.encode(
        EnqueueBatchRequest.fromPartial({ tasks: [{ command: "X" }] }),
      ).finish(),
    );
    // ForwardRequest's tenant (3), principal (4) and roles (5), as unknown
    // fields of the client's EnqueueBatchRequest
    const injected = Buffer.concat([
      batch,
      P.pb.bytes(3, "victim"),
      P.pb.bytes(4, "someone"),
      P.pb.bytes(5, "producer,admin,cross-tenant-worker"),
    ]);
    const metadata = new Metadata({ "x-codeq-tenant": "t1", "x-codeq-roles": "producer" });
    const answer = EnqueueBatchResponse.decode(await raw.EnqueueBatch(injected, { metadata }));
    expect(answer.results.map((r) => r.status!.code)).toEqual([0]);
    expect((await stats("a", "X", "t1")).ready).toBe(1);
    expect((await stats("a", "X", "victim")).ready).toBe(0);
  } finally {
    channel.close();
  }
});

test("enqueues in flight while a shard worker stops: each answered OK is stored, the others are UNAVAILABLE", async () => {
  const c = rc.client("t1");
  await c.enqueue({ command: "X" }); // the stream is open
  const sent = Array.from({ length: 200 }, (_, i) =>
    c.enqueue({ command: "X", payload: payload(`${i}`) }).then(
      (r) => r.taskId,
      (e: unknown) => e,
    ),
  );
  const stopping = rc.stopShard("a");
  const outcomes = await Promise.all(sent);
  await stopping;
  const accepted = outcomes.filter((o): o is string => typeof o === "string");
  expect(accepted.length).toBeGreaterThan(0);
  for (const o of outcomes) {
    if (typeof o === "string") continue;
    expect(o).toBeInstanceOf(ClientError);
    expect((o as ClientError).code).toBe(Status.UNAVAILABLE);
  }
  await rc.startShard("a");
  // each accepted id is stored; the stream is opened again for what comes next
  const ready = await stats("a", "X", "t1");
  expect(ready.ready).toBeGreaterThanOrEqual(accepted.length + 1);
  for (const id of accepted)
    expect(
      await rc.workers.get("a")!.engine.getTask({ command: "X", tenant: "t1" }, id),
    ).toBeDefined();
  await within(5_000, async () =>
    c.enqueue({ command: "X" }).then(
      () => true,
      () => false,
    ),
  );
});

test("a shard worker without Forward (older than the router) is sent Enqueue and EnqueueBatch calls", async () => {
  // What an older shard worker serves: QueueService's enqueues and no Forward.
  // It is shard a's own worker behind a server that offers only those two methods.
  const behind = createChannel(rc.addresses.get("a")!);
  const worker = createClient(QueueServiceDefinition, behind);
  const older = createServer();
  const { enqueue, enqueueBatch } = QueueServiceDefinition.methods;
  older.add(
    { ...QueueServiceDefinition, methods: { enqueue, enqueueBatch } },
    {
      enqueue: (req: EnqueueRequest, ctx: CallContext) =>
        worker.enqueue(req, { metadata: ctx.metadata }),
      enqueueBatch: (req: EnqueueBatchRequest, ctx: CallContext) =>
        worker.enqueueBatch(req, { metadata: ctx.metadata }),
    },
  );
  const address = `127.0.0.1:${await freePort()}`;
  await older.listen(address);
  try {
    await rc.change((m) => ({
      ...m,
      shards: { ...m.shards, a: { ...m.shards.a!, endpoint: address } },
    }));
    await within(2_000, () => rc.router.routing.map.shards.a?.endpoint === address);
    const c = rc.client("t1");
    expect((await c.enqueue({ command: "X" })).taskId).toHaveLength(26);
    const batch = await c.enqueueBatch({ tasks: [{ command: "X" }, { command: "X" }] as never });
    expect(batch.results.map((r) => r.status!.code)).toEqual([0, 0]);
    expect((await stats("a", "X", "t1")).ready).toBe(3);
    expect(await forwarded("a", "call")).toBe(2);
    expect(await forwarded("a", "stream")).toBe(0);
  } finally {
    await older.shutdown();
    behind.close();
  }
});

test("a shard worker found without Forward is asked again after a minute, and its streams are used once it has them", async () => {
  const address = `127.0.0.1:${await freePort()}`;
  const behind = createChannel(rc.addresses.get("a")!);
  const worker = createClient(QueueServiceDefinition, behind);
  const { enqueue, enqueueBatch } = QueueServiceDefinition.methods;
  const enqueues = {
    enqueue: (req: EnqueueRequest, ctx: CallContext) =>
      worker.enqueue(req, { metadata: ctx.metadata }),
    enqueueBatch: (req: EnqueueBatchRequest, ctx: CallContext) =>
      worker.enqueueBatch(req, { metadata: ctx.metadata }),
  };
  // Forward's messages as bytes, passed on to shard a's worker as they are
  const bytes = (b: Uint8Array) => b;
  const rawForward = {
    forward: {
      ...forwardService.forward,
      requestSerialize: bytes,
      requestDeserialize: bytes,
      responseSerialize: bytes,
      responseDeserialize: bytes,
    },
  } as const;
  const forwardTo = createClient(rawForward, behind);
  const older = createServer();
  older.add({ ...QueueServiceDefinition, methods: { enqueue, enqueueBatch } }, enqueues);
  await older.listen(address);
  let upgraded: ReturnType<typeof createServer> | undefined;
  const realNow = Date.now.bind(Date);
  // enough calls to try every lane (one per router channel, two by default) and more
  const sendFour = async () => {
    const c = rc.client("t1");
    for (let i = 0; i < 4; i++) await c.enqueue({ command: "X" });
  };
  try {
    await rc.change((m) => ({
      ...m,
      shards: { ...m.shards, a: { ...m.shards.a!, endpoint: address } },
    }));
    await within(2_000, () => rc.router.routing.map.shards.a?.endpoint === address);
    await sendFour();
    expect(await forwarded("a", "call")).toBe(4);
    // the same address now runs a worker that has Forward (an upgrade in place)
    await older.shutdown();
    upgraded = createServer();
    upgraded.add({ ...QueueServiceDefinition, methods: { enqueue, enqueueBatch } }, enqueues);
    upgraded.add(rawForward, {
      forward: (requests: AsyncIterable<Uint8Array>, ctx: CallContext) =>
        forwardTo.forward(requests, { metadata: ctx.metadata, signal: ctx.signal }),
    });
    await upgraded.listen(address);
    // within the minute the router does not ask again: still calls of their own
    await within(5_000, () =>
      rc
        .client("t1")
        .enqueue({ command: "X" })
        .then(
          () => true,
          () => false,
        ),
    );
    await sendFour();
    const calls = await forwarded("a", "call");
    expect(calls).toBeGreaterThanOrEqual(9);
    expect(await forwarded("a", "stream")).toBe(0);
    // a minute on, it asks again, and the enqueues go on the streams
    jest.spyOn(Date, "now").mockImplementation(() => realNow() + 61_000);
    await sendFour();
    expect(await forwarded("a", "stream")).toBe(4);
    expect(await forwarded("a", "call")).toBe(calls);
    expect((await stats("a", "X", "t1")).ready).toBe(calls + 4);
  } finally {
    jest.restoreAllMocks();
    await older.shutdown();
    upgraded?.forceShutdown(); // the router's Forward streams to it stay open
    behind.close();
  }
});

test("leases, acks, nacks and extends go on the streams too, and a worker settles only its own", async () => {
  const [p, w] = [rc.client("t1", "producer"), rc.client("t1", "worker")];
  await p.enqueueBatch({ tasks: [{ command: "X" }, { command: "X" }, { command: "X" }] as never });
  const [a, b, c] = (await w.lease({ commands: ["X"], maxTasks: 3 })).tasks.map(
    (t) => t.leaseToken,
  );
  expect(
    (await w.extend({ items: [{ leaseToken: a!, leaseDurationMs: 60_000 }] })).results[0]!.status!
      .code,
  ).toBe(0);
  expect((await w.ack({ items: [{ leaseToken: a! }] })).results.map((r) => r.code)).toEqual([0]);
  expect(
    (await w.nack({ items: [{ leaseToken: b!, deadLetter: true }] })).results.map((r) => r.code),
  ).toEqual([0]);
  // another tenant's worker holds a valid token of t1's, which is not its to settle
  const other = rc.client("t2", "worker");
  expect((await other.ack({ items: [{ leaseToken: c! }] })).results.map((r) => r.code)).toEqual([
    Status.NOT_FOUND,
  ]);
  expect(await stats("a", "X", "t1")).toMatchObject({ leased: 1, dead: 1 });
  expect(await forwarded("a", "stream", "ack")).toBe(2);
  expect(await forwarded("a", "stream", "nack")).toBe(1);
  expect(await forwarded("a", "stream", "extend")).toBe(1);
  expect(await forwarded("a", "call", "ack")).toBe(0);
  // the Lease did not wait: on the stream; one that waits is a call of its own
  expect(await forwarded("a", "stream", "lease")).toBe(1);
  // (one that may wait first asks for what is ready, on the stream: here it is)
  await p.enqueue({ command: "X" });
  const ready = await w.lease({ commands: ["X"], maxTasks: 1, waitMs: 1_000 });
  expect(ready.tasks).toHaveLength(1);
  expect(await forwarded("a", "stream", "lease")).toBe(2);
  expect(await forwarded("a", "call", "lease")).toBe(0);
  const waiting = w.lease({ commands: ["X"], maxTasks: 1, waitMs: 5_000 });
  await within(2_000, async () => (await forwarded("a", "call", "lease")) === 1);
  await p.enqueue({ command: "X" });
  expect((await waiting).tasks).toHaveLength(1);
  expect(await forwarded("a", "stream", "lease")).toBe(3);
});

test("a call the shard does not answer in time fails DEADLINE_EXCEEDED, and the stream goes on", async () => {
  await impatientRouter();
  const c = rc.client("t1");
  await c.enqueue({ command: "X" }); // the stream is open
  const redis = rc.server.client();
  try {
    await pauseStore(redis, 1_000);
    const late = await failure(c.enqueue({ command: "X" }));
    expect(late.code).toBe(Status.DEADLINE_EXCEEDED);
    expect(late.details).toMatch(/may or may not have been applied/);
    await new Promise((r) => setTimeout(r, 1_000));
    // its late answer is dropped; the same stream answers the next call
    expect((await c.enqueue({ command: "X" })).taskId).toHaveLength(26);
    expect(await forwarded("a", "call")).toBe(0);
  } finally {
    redis.disconnect();
  }
});

test("a stream holding its most calls refuses the next at once, and counts it refused", async () => {
  // one call waiting per stream; two streams (channelsPerShard) to a
  await routerWith({ forwardMaxPending: 1 });
  const c = rc.client("t1");
  await c.enqueue({ command: "X" }); // the streams are open
  await c.enqueue({ command: "X" });
  const before = await forwarded("a", "stream");
  const redis = rc.server.client();
  try {
    await pauseStore(redis, 500);
    const calls = Array.from({ length: 4 }, () =>
      c.enqueue({ command: "X" }).then(
        () => "stored",
        (e: unknown) => e,
      ),
    );
    const outcomes = await Promise.all(calls);
    const refused = outcomes.filter((o) => o instanceof ClientError);
    // at most one waits per stream: the others were refused at once, nothing sent
    expect(outcomes.filter((o) => o === "stored").length).toBeLessThanOrEqual(2);
    expect(refused.length).toBeGreaterThanOrEqual(2);
    for (const e of refused as ClientError[]) {
      expect(e.code).toBe(Status.UNAVAILABLE);
      expect(e.details).toMatch(/not keeping up: 1 calls are waiting/);
    }
    expect(await forwarded("a", "refused")).toBe(refused.length);
    expect(await forwarded("a", "stream")).toBe(before + 4 - refused.length);
    const stored = await stats("a", "X", "t1");
    expect(stored.ready).toBe(2 + 4 - refused.length);
  } finally {
    redis.disconnect();
  }
});

test("a lease the router gave up waiting for is given back when it comes, not left to expire", async () => {
  await impatientRouter();
  const [p, w] = [rc.client("t1", "producer"), rc.client("t1", "worker")];
  await p.enqueue({ command: "X" });
  await w.lease({ commands: ["NOTHING"], maxTasks: 1 }); // the stream is open
  const redis = rc.server.client();
  try {
    await pauseStore(redis, 1_000);
    const late = await failure(w.lease({ commands: ["X"], maxTasks: 1, leaseDurationMs: 60_000 }));
    expect(late.code).toBe(Status.DEADLINE_EXCEEDED);
    // the shard leased it once the store came back; the router gave it back at once,
    // rather than leave it held by no one for the lease's minute
    await within(5_000, async () => (await stats("a", "X", "t1")).ready === 1);
    expect((await stats("a", "X", "t1")).leased).toBe(0);
    expect((await w.lease({ commands: ["X"], maxTasks: 1 })).tasks).toHaveLength(1);
  } finally {
    redis.disconnect();
  }
});
