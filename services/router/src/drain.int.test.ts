import { getEventListeners } from "node:events";
import { createChannel, createClient, Metadata, Status } from "nice-grpc";
import { QueueServiceDefinition, type EnqueueStreamRequest } from "@codeq/proto";
import { Channel } from "@codeq/server-kit";
import { SHUT_DOWN_WHILE_HELD } from "@codeq/shard";
import { routerCluster, Stream, within, type RouterCluster } from "./test/cluster";

/** Enqueues `n` tasks of X, each with one attempt only (through the router, or `client`). */
const enqueueX = (rc: RouterCluster, n: number, client = rc.client("t1")) =>
  client.enqueueBatch({
    tasks: Array.from({ length: n }, () => ({ command: "X", maxAttempts: 1 })),
  });

/** A LeaseStream through the router holding three tasks of X, each on its only attempt. */
async function holdingThree(rc: RouterCluster, credits = 3): Promise<Stream> {
  await enqueueX(rc, 3);
  const s = new Stream(rc);
  s.send({ subscribe: { commands: ["X"] }, credits });
  await within(2_000, () => s.tasks().length === 3);
  return s;
}

/** Acks `token` three times, each answered OK: counting answers, nothing would be held. */
async function ackThrice(s: Stream, token: string): Promise<void> {
  for (const requestId of [1, 2, 3]) {
    s.send({ requestId, acks: [{ leaseToken: token }] });
    await within(2_000, () => s.settled(requestId) !== undefined);
  }
}

/**
 * With the router stopping and the stream still open, acks the two tasks it holds
 * yet, and checks that the stop ended nothing early: with max_attempts 1, a lease
 * released by an early end would have gone to the DLQ.
 */
async function ackTheRest(rc: RouterCluster, s: Stream, stopping: Promise<void>): Promise<void> {
  expect(s.failure).toBeUndefined(); // two tasks are still held: the stream is open
  const [, t2, t3] = s.tasks().map((t) => t.leaseToken);
  s.send({ requestId: 4, acks: [t2!, t3!].map((leaseToken) => ({ leaseToken })) });
  await stopping;
  expect(s.settled(4)!.acks.map((a) => a.code)).toEqual([Status.OK, Status.OK]);
  const stats = await rc.workers.get("a")!.engine.stats({ command: "X", tenant: "t1" });
  expect(stats).toMatchObject({ completed: 3, dead: 0, leased: 0 });
}

describe("draining at shutdown, through the router", () => {
  test("a shard worker that stops still takes the acks of what its stream pushed", async () => {
    // a grace period longer than the test: the shard's stream must end because it
    // holds nothing, not because its drain ran out of time
    const rc = await routerCluster({ shards: ["a"], shard: { graceMs: 60_000 } });
    try {
      const s = await holdingThree(rc);

      const stopping = rc.stopShard("a");
      await new Promise((r) => setTimeout(r, 100));
      s.send({ requestId: 1, acks: s.tasks().map((t) => ({ leaseToken: t.leaseToken })) });
      await within(5_000, () => s.settled(1) !== undefined);
      expect(s.settled(1)!.acks.map((a) => a.code)).toEqual([Status.OK, Status.OK, Status.OK]);
      await stopping;
      expect(s.failure).toBeUndefined(); // the client's stream goes on

      await rc.startShard("a");
      const stats = (await rc.client("t1").queueStats({ command: "X" })).total!;
      // with max_attempts 1, a lease released by the shutdown would have sent its task to the DLQ
      expect(stats).toMatchObject({ completed: 3, dead: 0, leased: 0 });
      await s.close();
    } finally {
      await rc.close();
    }
  }, 30_000);

  test("a router that stops takes the acks of what it delivered, pushes nothing more, then ends the stream", async () => {
    const rc = await routerCluster({ shards: ["a", "b"], router: { graceMs: 60_000 } });
    try {
      const s = await holdingThree(rc, 5); // shard a still holds two credits

      const stopping = rc.router.stop();
      await new Promise((r) => setTimeout(r, 100));
      expect(s.failure).toBeUndefined(); // still open while it holds tasks
      // the shard has no credits left to push these with: a task pushed now would be
      // released (and dead-lettered, on its only attempt) when the stream ends
      const channel = createChannel(rc.addresses.get("a")!);
      const direct = createClient(QueueServiceDefinition, channel, {
        "*": { metadata: new Metadata({ "x-codeq-tenant": "t1" }) },
      });
      await enqueueX(rc, 2, direct);
      channel.close();
      await new Promise((r) => setTimeout(r, 300));
      expect(s.tasks()).toHaveLength(3);
      s.send({
        requestId: 1,
        credits: 3,
        acks: s.tasks().map((t) => ({ leaseToken: t.leaseToken })),
      });
      await stopping;
      expect(s.settled(1)!.acks.map((a) => a.code)).toEqual([Status.OK, Status.OK, Status.OK]);
      expect(s.failure).toMatchObject({
        code: Status.UNAVAILABLE,
        details: expect.stringMatching(/router is shutting down/),
      });
      const stats = await rc.workers.get("a")!.engine.stats({ command: "X", tenant: "t1" });
      // with max_attempts 1, a lease released by the shutdown would have sent its task to the DLQ
      expect(stats).toMatchObject({ completed: 3, dead: 0, leased: 0, ready: 2 });
    } finally {
      await rc.close();
    }
  }, 30_000);

  test("a router that stops asks the shards what its stream holds before it ends it", async () => {
    const rc = await routerCluster({ shards: ["a"], router: { graceMs: 60_000 } });
    try {
      const s = await holdingThree(rc);
      const stopping = rc.router.stop();
      await new Promise((r) => setTimeout(r, 100));
      await ackThrice(s, s.tasks()[0]!.leaseToken);
      await new Promise((r) => setTimeout(r, 300));
      await ackTheRest(rc, s, stopping);
    } finally {
      await rc.close();
    }
  }, 30_000);

  test("a router that stops does not end the stream on its own count while a shard's store stalls", async () => {
    const shardTimeoutMs = 1_000;
    const rc = await routerCluster({ shards: ["a"], router: { graceMs: 60_000, shardTimeoutMs } });
    const redis = rc.server.client();
    try {
      const s = await holdingThree(rc);
      await ackThrice(s, s.tasks()[0]!.leaseToken); // the router's count is short by two
      // the shard's store stalls past the shard timeout: the shard answers the drain's
      // question of what its stream holds late, though its health check answers
      const stall = 4 * shardTimeoutMs;
      await redis.call("CLIENT", "PAUSE", String(stall));
      const stopping = rc.router.stop();
      await new Promise((r) => setTimeout(r, stall + 1_000));
      await ackTheRest(rc, s, stopping);
    } finally {
      redis.disconnect();
      await rc.close();
    }
  }, 30_000);

  test("a router whose drain runs out has the shards release what its stream holds, its attempts not counted", async () => {
    // the interruption has what is left of the grace period after the drain (20%)
    const rc = await routerCluster({ shards: ["a", "b"], router: { graceMs: 3_000 } });
    try {
      const s = await holdingThree(rc);
      const [first] = s.tasks();
      // the worker finishes one; the other two are still running when the drain ends
      s.send({ requestId: 1, acks: [{ leaseToken: first!.leaseToken }] });
      await within(2_000, () => s.settled(1) !== undefined);
      await rc.router.stop();
      await within(4_000, () => s.ended);
      expect(s.failure).toMatchObject({ code: Status.UNAVAILABLE });
      const a = rc.workers.get("a")!.engine;
      // on their only attempt, and not dead-lettered: the worker failed neither
      expect(await a.stats({ command: "X", tenant: "t1" })).toMatchObject({
        completed: 1,
        ready: 2,
        dead: 0,
        leased: 0,
      });
      for (const t of s.tasks().slice(1))
        expect(await a.getTask({ command: "X", tenant: "t1" }, t.task!.id)).toMatchObject({
          attempts: 0,
          lastError: SHUT_DOWN_WHILE_HELD,
        });
    } finally {
      await rc.close();
    }
  }, 30_000);

  test.each([[["a"]], [["a", "b"]]])(
    "a router that stops answers a waiting Lease with what it has (shards %j)",
    async (shards) => {
      const rc = await routerCluster({ shards, router: { graceMs: 60_000 } });
      try {
        // a long poll that ends on its own leaves nothing hooked on the router's drain
        const drain = rc.router.grpc.lifecycle.signal;
        const hooked = getEventListeners(drain, "abort").length;
        await rc.client("t1").lease({ commands: ["W"], maxTasks: 1, waitMs: 200 });
        expect(getEventListeners(drain, "abort")).toHaveLength(hooked);
        const waiting = rc.client("t1").lease({ commands: ["W"], maxTasks: 5, waitMs: 30_000 });
        const noAnswer = Symbol("no answer");
        // the long poll is with the shards (a moment for it to get there)
        await new Promise((r) => setTimeout(r, 300));
        const stopping = rc.router.stop();
        // well before its 30 s wait, and not an error
        const answer = await Promise.race([
          waiting,
          new Promise((r) => setTimeout(() => r(noAnswer), 10_000)),
        ]);
        expect(answer).toEqual({ tasks: [] });
        await stopping;
        // the shards hold no lease for the call that ended: a task enqueued now is ready
        for (const id of shards) {
          const engine = rc.workers.get(id)!.engine;
          await engine.enqueue({ command: "W", tenant: "t1" }, [{}]);
          await new Promise((r) => setTimeout(r, 50));
          expect(await engine.stats({ command: "W", tenant: "t1" })).toMatchObject({
            ready: 1,
            leased: 0,
          });
        }
      } finally {
        await rc.close();
      }
    },
    30_000,
  );

  test("a router that stops answers the EnqueueStream batches it read, and reads no more", async () => {
    const rc = await routerCluster({ shards: ["a"], router: { graceMs: 60_000 } });
    try {
      const outbox = new Channel<EnqueueStreamRequest>();
      const batch = (seq: number) => ({ seq, tasks: [{ command: "E" }] as never });
      const answers: number[] = [];
      const ended = (async () => {
        try {
          for await (const res of rc.client("t1").enqueueStream(outbox)) answers.push(res.seq);
        } catch (err) {
          return err;
        }
      })();
      outbox.push(batch(1));
      await within(2_000, () => answers.length === 1);

      const stopping = rc.router.stop();
      await new Promise((r) => setTimeout(r, 100));
      outbox.push(batch(2)); // sent once the router drains: neither read nor stored
      expect(await ended).toMatchObject({
        code: Status.UNAVAILABLE,
        details: expect.stringMatching(/router is shutting down/),
      });
      await stopping;
      expect(answers).toEqual([1]);
      const stats = await rc.workers.get("a")!.engine.stats({ command: "E", tenant: "t1" });
      expect(stats.ready).toBe(1);
    } finally {
      await rc.close();
    }
  }, 30_000);
});
