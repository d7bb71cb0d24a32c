import { ClientError, Status } from "nice-grpc";
import { LeaseStreamRequest, type LeaseStreamResponse, TaskState } from "@codeq/proto";
import { setTimeout as sleep } from "node:timers/promises";
import { startRelay, steady, type Relay } from "@codeq/testing";
import type { RouterConfig } from "./config";
import {
  enqueueLarge,
  routerCluster,
  slowStream,
  Stream,
  within,
  type RouterCluster,
} from "./test/cluster";

/**
 * A shard worker that hangs with its connections open (a stopped process, a host whose
 * packets are dropped): nothing closes its streams until keepalive notices, up to 40 s.
 * The router's fan-in gives up on a shard stream that does not answer within the shard
 * timeout, so the client's stream goes on with the other shards.
 */
const SHARD_TIMEOUT_MS = 1_000;

let rc: RouterCluster;
let relay: Relay;

/** Shards a (command X) and b (command Y); b is reached through a relay that can go silent. */
async function setUp(shardTimeoutMs: number, router: Partial<RouterConfig> = {}): Promise<void> {
  rc = await routerCluster({
    commands: { X: "a", Y: "b" },
    shard: { mover: false },
    router: { shardTimeoutMs, ...router },
  });
  const [host, port] = rc.addresses.get("b")!.split(":");
  relay = await startRelay(host!, Number(port));
  const endpoint = `127.0.0.1:${relay.port}`;
  await rc.change((m) => ({ ...m, shards: { ...m.shards, b: { ...m.shards.b!, endpoint } } }));
  await within(2_000, () => rc.router.routing.pool.get("b").endpoint === endpoint);
}
afterEach(async () => {
  await relay.close();
  await rc.close();
});

describe("a shard that answers within the shard timeout of tests", () => {
  beforeEach(() => setUp(SHARD_TIMEOUT_MS));

  test("a client's withdrawal is answered without a shard that stopped answering", async () => {
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X", "Y"] }, credits: 4 });
    const c = rc.client("t1");
    await c.enqueue({ command: "X", payload: Buffer.from("on a") });
    await c.enqueue({ command: "Y", payload: Buffer.from("on b") });
    await within(3_000, () => s.tasks().length === 2); // both shard streams answer

    relay.silence(); // b hangs: no FIN, no RST, no answer
    const started = Date.now();
    s.send({ withdrawCredits: true, requestId: 1 });
    // the shard timeout, then a health check as long that gets no answer either
    await within(2 * SHARD_TIMEOUT_MS + 2_000, () => s.received.some((r) => r.withdrawn));
    expect(Date.now() - started).toBeGreaterThanOrEqual(2 * SHARD_TIMEOUT_MS - 50);
    // the two unused credits come back; a's task is still held (b's stream, given up, is
    // not counted: b releases its task if it wakes)
    expect(s.received.find((r) => r.withdrawn)!.withdrawn).toMatchObject({
      requestId: 1,
      credits: 2,
      held: 1,
    });

    // credits flow again, to the shard that answers
    s.send({ credits: 2 });
    await c.enqueue({ command: "X", payload: Buffer.from("on a again") });
    await within(3_000, () => s.tasks().length === 3);
    expect(Buffer.from(s.tasks()[2]!.task!.payload).toString()).toBe("on a again");
    // a's first task was not released under the worker: its ack is applied
    const onA = s.tasks().find((t) => t.task!.shard === "a")!;
    s.send({ requestId: 2, acks: [{ leaseToken: onA.leaseToken }] });
    await within(3_000, () => s.settled(2) !== undefined);
    expect(s.settled(2)!.acks[0]!.code).toBe(Status.OK);
    expect(s.failure).toBeUndefined();
    await s.close();
  });

  test("a withdrawal's answer behind the pushes a slow client has not read is waited for, not taken for a shard gone quiet", async () => {
    const n = 96;
    const credits = 200;
    await enqueueLarge(rc, "X", n);
    const { s, readOn } = slowStream(rc);
    s.send({ subscribe: { commands: ["X"], maxBatch: 1 }, credits });
    // the client reads nothing: a's pushes wait in the router, and a leases no more
    const engine = rc.workers.get("a")!.engine;
    const leased = await steady(
      async () => (await engine.stats({ command: "X", tenant: "t1" })).leased,
    );
    expect(leased).toBeLessThan(n);
    // a answers the withdrawal behind its pushes, which the router reads no further
    // while the client does not read: well past the shard timeout and a health check
    s.send({ withdrawCredits: true, requestId: 1 });
    // the client reads on shortly before the router's third wait for the answer ends:
    // at that end it is no longer backed up, and the answer is still on its way behind
    // the pushes (their reading takes some 200 ms here); it is not taken for late
    await sleep(3 * SHARD_TIMEOUT_MS - 100);
    readOn();
    await within(5_000, () => s.received.some((r) => r.withdrawn));
    await sleep(500);
    // every credit is a task received before the answer, or in the answer: none was
    // left with a (answered without it, as for a shard gone quiet) and pushed after
    const at = s.received.findIndex((r) => r.withdrawn);
    const before = s.received.slice(0, at).flatMap((r) => r.tasks?.tasks ?? []).length;
    const after = s.received.slice(at + 1).flatMap((r) => r.tasks?.tasks ?? []).length;
    expect(s.received[at]!.withdrawn).toMatchObject({ requestId: 1, credits: credits - before });
    expect(after).toBe(0);
    expect(s.failure).toBeUndefined();
    await s.close();
  }, 30_000);

  test("a client's withdrawal does not wait for ever for a shard that never answers its subscription", async () => {
    relay.silence();
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X", "Y"] }, credits: 4 });
    await within(3_000, () => s.received.some((r) => r.subscribed)); // a answers
    // b holds some of the credits, and whether it takes withdrawals is not known yet
    s.send({ withdrawCredits: true, requestId: 1 });
    await within(2 * SHARD_TIMEOUT_MS + 2_000, () => s.received.some((r) => r.withdrawn));
    expect(s.received.find((r) => r.withdrawn)!.withdrawn).toMatchObject({ credits: 4, held: 0 });
    expect(s.failure).toBeUndefined();
    await s.close();
  });

  test("a shard whose store stalls answers late but lives: its stream, and what it holds, are kept", async () => {
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X", "Y"] }, credits: 4 });
    const c = rc.client("t1");
    await c.enqueue({ command: "X", payload: Buffer.from("on a") });
    await within(3_000, () => s.tasks().length === 1); // the worker runs a's task
    const redis = rc.server.client();
    const stall = 5 * SHARD_TIMEOUT_MS;
    try {
      // the store answers no one for longer than the shard timeout: a's withdrawal waits
      // for its check of what the stream holds, while a's health check is answered
      await redis.call("CLIENT", "PAUSE", String(stall));
      const paused = Date.now();
      s.send({ withdrawCredits: true, requestId: 1 });
      // answered while the store still stalls, without what a's stream holds
      await within(stall, () => s.received.some((r) => r.withdrawn));
      expect(Date.now() - paused).toBeLessThan(stall - 1_000);
      const { credits, held } = s.received.find((r) => r.withdrawn)!.withdrawn!;
      expect(held).toBe(1);
      expect(credits).toBeLessThan(3); // a's unused credits were kept, not taken back
      // an ack meanwhile is not waited for longer than the shard timeout (a's health
      // check is answered: it fails as a unary ack would, and the stream is kept)
      const token = s.tasks()[0]!.leaseToken;
      const acked = Date.now();
      s.send({ requestId: 2, acks: [{ leaseToken: token }] });
      await within(stall, () => s.settled(2) !== undefined);
      expect(Date.now() - acked).toBeLessThan(2 * SHARD_TIMEOUT_MS + 1_000);
      expect(s.settled(2)!.acks[0]!.code).toBe(Status.DEADLINE_EXCEEDED);
      // a failure of the shard's, as a unary ack's timeout is: a's breaker counts it
      expect(rc.router.routing.pool.get("a").breaker.stats.failures).toBe(1);
      // a's stream was kept: once the store is back, the ack it was sent is applied, and
      // the stream holds nothing (a withdrawal's answer says so)
      await within(stall + 3_000, async () => {
        const task = await c
          .getTask({ command: "X", taskId: s.tasks()[0]!.task!.id })
          .catch(() => undefined); // the store still stalls
        return task?.task?.state === TaskState.TASK_STATE_COMPLETED;
      });
      s.send({ withdrawCredits: true, requestId: 3 });
      await within(3_000, () => s.received.filter((r) => r.withdrawn).length === 2);
      expect(s.received.filter((r) => r.withdrawn)[1]!.withdrawn!.held).toBe(0);
    } finally {
      redis.disconnect();
    }
    expect(s.failure).toBeUndefined();
    await s.close();
  }, 20_000);

  test("a caller's call that ends while the breaker is half-open does not close it", async () => {
    const conn = rc.router.routing.pool.get("b");
    // a call that began while b answered, and ends later on its caller's account
    let endCall!: (err: unknown) => void;
    const ended = conn
      .call(() => new Promise((_resolve, reject) => (endCall = reject)))
      .catch(() => undefined);
    relay.silence(); // b hangs: the breaker's trial waits for the shard timeout
    const broke = () => new ClientError("/x", Status.UNAVAILABLE, "b does not answer");
    for (let i = 0; i < 10 && conn.breakerState !== "open"; i++)
      await conn.call(() => Promise.reject(broke())).catch(() => undefined);
    expect(conn.breakerState).toBe("open");
    await within(5_000, () => conn.breakerState === "half-open");
    endCall(new ClientError("/x", Status.CANCELLED, "the caller left"));
    await ended;
    // not a sign of b's health: the breaker stays shut to callers until its trial answers
    expect(conn.breakerState).not.toBe("closed");
    await within(2 * SHARD_TIMEOUT_MS + 1_000, () => conn.breakerState === "open");
  });

  test("a settlement sent to a shard that stopped answering is answered within twice the shard timeout", async () => {
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X", "Y"] }, credits: 4 });
    const c = rc.client("t1");
    await c.enqueue({ command: "X", payload: Buffer.from("on a") });
    await c.enqueue({ command: "Y", payload: Buffer.from("on b") });
    await within(3_000, () => s.tasks().length === 2);
    const onA = s.tasks().find((t) => t.task!.shard === "a")!;
    const onB = s.tasks().find((t) => t.task!.shard === "b")!;

    relay.silence(); // b hangs: keepalive would notice only after up to 40 s
    const started = Date.now();
    s.send({ requestId: 1, acks: [{ leaseToken: onB.leaseToken }] });
    s.send({ requestId: 2, acks: [{ leaseToken: onA.leaseToken }] });
    // a answers at once, not behind b
    await within(1_000, () => s.settled(2) !== undefined);
    expect(s.settled(2)!.acks[0]!.code).toBe(Status.OK);
    // the shard timeout, then a health check as long that gets no answer either: b's
    // stream is given up, and what waited on it fails as retryable
    await within(2 * SHARD_TIMEOUT_MS + 2_000, () => s.settled(1) !== undefined);
    expect(Date.now() - started).toBeGreaterThanOrEqual(SHARD_TIMEOUT_MS - 50);
    expect(s.settled(1)!.acks[0]!.code).toBe(Status.UNAVAILABLE);
    expect(s.failure).toBeUndefined();
    await s.close();
  });

  test("a RedriveDead is given as long as its tasks take at its rate, the shard timeout on top", async () => {
    const queue = { command: "Y", tenant: "t1" };
    const engine = rc.workers.get("b")!.engine;
    await engine.enqueue(queue, [{}, {}, {}, {}, {}]);
    const leased = await engine.lease(queue, { max: 5, leaseMs: 30_000 });
    await engine.nack(leased.map((d) => ({ token: d.token, deadLetter: true })));
    const admin = rc.client("t1", "admin");

    // three at two a second take 1.5 s, longer than the shard timeout (1 s)
    const redrove = Date.now();
    expect(await admin.redriveDead({ command: "Y", maxTasks: 3, ratePerSecond: 2 })).toMatchObject({
      redriven: 3,
      remaining: 2,
    });
    expect(Date.now() - redrove).toBeGreaterThanOrEqual(1_400);

    // a shard that stops answering fails the call once its tasks' time and the shard
    // timeout are over (2 s + 1 s), not after some fixed long cap (nor the caller's 10 s)
    relay.silence();
    const started = Date.now();
    const err = await admin
      .redriveDead(
        { command: "Y", maxTasks: 2, ratePerSecond: 1 },
        { signal: AbortSignal.timeout(10_000) },
      )
      .then(
        () => undefined,
        (e: unknown) => e as ClientError,
      );
    expect(err?.code).toBe(Status.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_900);
    expect(Date.now() - started).toBeLessThan(6_000);
  });
});

describe("while the router still waits for a shard", () => {
  // long enough that the router does not give up on b during the test
  beforeEach(() => setUp(30_000));

  test("a shard that has not answered its subscription holds no more credits than an idle one", async () => {
    relay.silence(); // b hangs: its stream never answers its subscription
    const c = rc.client("t1");
    await c.enqueueBatch({
      tasks: Array.from({ length: 80 }, (_, i) => ({
        command: "X",
        payload: Buffer.from(`on a ${i}`),
      })),
    });
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X", "Y"] }, credits: 100 });
    // b's share beyond the idle allowance (10) goes to a: the worker, who acks
    // nothing, gets all 80 of a's tasks (with b's busy share of 50 held by a stream
    // that never answers, it got 50 until the router gave up on b)
    await within(5_000, () => s.tasks().length === 80);
    expect(s.tasks().every((t) => t.task!.shard === "a")).toBe(true);
    expect(s.failure).toBeUndefined();
    await s.close();
  });
});

describe("a router whose streams may hold 100 credits", () => {
  beforeEach(() => setUp(SHARD_TIMEOUT_MS, { maxStreamCredits: 100 }));

  test("a client sending settlements faster than a shard answers them is read no further", async () => {
    const c = rc.client("t1");
    await c.enqueue({ command: "Y", payload: Buffer.from("on b") });
    let token: string | undefined;
    let pulled = 0;
    // extends of b's task, 1,000 to a message: the router reads 1,100 unanswered
    // settlements (the 100 credits a client may hold, and a message more), then waits
    async function* requests(): AsyncGenerator<LeaseStreamRequest> {
      yield LeaseStreamRequest.fromPartial({ subscribe: { commands: ["Y"] }, credits: 1 });
      await within(3_000, () => token !== undefined);
      relay.silence();
      for (let i = 0; i < 500; i++) {
        pulled++;
        yield LeaseStreamRequest.fromPartial({
          requestId: 10 + i,
          extends: Array.from({ length: 1_000 }, () => ({ leaseToken: token! })),
        });
      }
      await new Promise(() => undefined); // the client stays
    }
    const abort = new AbortController();
    const received: LeaseStreamResponse[] = [];
    const done = (async () => {
      try {
        const responses = c.leaseStream(requests(), { signal: abort.signal });
        for await (const r of responses) {
          received.push(r);
          token ??= r.tasks?.tasks[0]?.leaseToken;
        }
      } catch {
        // cancelled below
      }
    })();
    await within(3_000, () => pulled > 0);
    // before the shard timeout answers any of them: the client is held back by flow control
    await new Promise((r) => setTimeout(r, SHARD_TIMEOUT_MS / 2));
    expect(pulled).toBeLessThan(100);
    abort.abort();
    await done;
  });
});

describe("a unary Lease over a queue on two shards, one of them hung", () => {
  // the default shard timeout: what a Lease waited for before
  beforeEach(() => setUp(10_000, { fanoutTimeoutMs: 300 }));

  test("answers with what the shard that answers leased, not after the other's timeout", async () => {
    // X moves from b to a: a Lease asks both
    await rc.change((m) => ({
      ...m,
      migrations: [
        { id: "m1", command: "X", from: "b", to: "a", state: "copying", startedAtMs: Date.now() },
      ],
    }));
    await within(2_000, () => rc.router.routing.leaseShards(["X"], "t1", false).length === 2);
    const c = rc.client("t1");
    await c.enqueue({ command: "X", payload: Buffer.from("on a") });
    relay.silence(); // b hangs: no FIN, no RST, no answer
    const started = Date.now();
    const res = await c.lease({ commands: ["X"], maxTasks: 4 });
    expect(res.tasks.map((t) => Buffer.from(t.task!.payload).toString())).toEqual(["on a"]);
    expect(Date.now() - started).toBeLessThan(3_000);
  });
});
