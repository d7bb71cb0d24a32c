import { Status } from "nice-grpc";
import { startRelay, type Relay } from "@codeq/testing";
import { routerCluster, Stream, within, type RouterCluster } from "./test/cluster";

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
async function setUp(shardTimeoutMs: number): Promise<void> {
  rc = await routerCluster({
    commands: { X: "a", Y: "b" },
    shard: { mover: false },
    router: { shardTimeoutMs },
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
      // a's stream was kept: once the store is back, the task's ack is applied
      s.send({ requestId: 2, acks: [{ leaseToken: s.tasks()[0]!.leaseToken }] });
      await within(stall + 3_000, () => s.settled(2) !== undefined);
      expect(s.settled(2)!.acks[0]!.code).toBe(Status.OK);
    } finally {
      redis.disconnect();
    }
    expect(s.failure).toBeUndefined();
    await s.close();
  }, 20_000);
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
