import { Status } from "nice-grpc";
import { createChannel, createClient } from "nice-grpc";
import { HealthDefinition } from "nice-grpc-server-health";
import type { EnqueueStreamRequest } from "@codeq/proto";
import { Channel } from "@codeq/server-kit";
import {
  eventually,
  relayedShardFixture,
  shardFixture,
  slowReader,
  StreamDriver,
  SUB,
  type ShardFixture,
} from "./test/fixture";
import { SHUT_DOWN_WHILE_HELD } from "./lease-stream";

describe("graceful shutdown", () => {
  let fx: ShardFixture;
  beforeAll(async () => (fx = await shardFixture()));
  afterAll(() => fx.close());

  it("goes NOT_SERVING, ends streams with UNAVAILABLE releasing their leases, and loses no accepted task", async () => {
    const producer = fx.client("g");
    const accepted = new Set<string>();
    const acked = new Set<string>();
    const stream = new StreamDriver(fx.client("g"));
    stream.send({ ...SUB(["GRACE"]), credits: 1000 });
    await stream.next();

    // a producer and the worker run while the shard worker is told to stop
    let producing = true;
    const producing$ = (async () => {
      while (producing) {
        try {
          const res = await producer.enqueueBatch({
            tasks: Array.from({ length: 20 }, () => ({ command: "GRACE" }) as never),
          });
          for (const r of res.results) if (r.status?.code === Status.OK) accepted.add(r.taskId);
        } catch {
          return; // the server stopped taking calls
        }
      }
    })();
    const consuming$ = (async () => {
      let requestId = 0;
      try {
        for (;;) {
          const res = await stream.next(10_000);
          if (!res) return;
          const tasks = res.tasks?.tasks ?? [];
          // ack only half: the other half is held when the stream ends
          const toAck = tasks.filter((_, i) => i % 2 === 0);
          for (const t of toAck) acked.add(t.task!.id);
          if (toAck.length)
            stream.send({
              requestId: ++requestId,
              credits: toAck.length,
              acks: toAck.map((t) => ({ leaseToken: t.leaseToken, result: Buffer.alloc(0) })),
            });
        }
      } catch (err) {
        return err;
      }
    })();
    await new Promise((r) => setTimeout(r, 300));

    const health = createClient(HealthDefinition, createChannel(fx.address));
    const stopping = fx.worker.stop();
    producing = false;
    expect(fx.worker.grpc.health.getStatus()).toBe("unhealthy");
    const streamEnd = await consuming$;
    expect(streamEnd).toMatchObject({
      code: Status.UNAVAILABLE,
      details: expect.stringMatching(/shutting down/),
    });
    await producing$;
    await stopping;
    await expect(
      health.check({ service: "" }, { signal: AbortSignal.timeout(1_000) }),
    ).rejects.toBeDefined();
    expect(accepted.size).toBeGreaterThan(0);

    // a new worker on the same store: every accepted task is either acked or ready to lease again
    await fx.restart();
    const after = fx.client("g");
    const stats = (await after.queueStats({ command: "GRACE" })).total!;
    expect(stats.leased).toBe(0); // the stream's leases were released, not left to expire
    const remaining = new Set<string>();
    for (;;) {
      const res = await after.lease({ commands: ["GRACE"], maxTasks: 1000 });
      if (res.tasks.length === 0) break;
      for (const t of res.tasks) remaining.add(t.task!.id);
      await after.ack({
        items: res.tasks.map((t) => ({ leaseToken: t.leaseToken, result: Buffer.alloc(0) })),
      });
    }
    for (const id of accepted) expect(acked.has(id) || remaining.has(id)).toBe(true);
  }, 30_000);
});

describe("a LeaseStream drains at shutdown", () => {
  const acks = (tasks: { leaseToken: string }[]) =>
    tasks.map((t) => ({ leaseToken: t.leaseToken, result: Buffer.alloc(0) }));

  /** `enqueued` tasks of `command` (as `spec`), and a stream holding `credits` of them. */
  async function holding(
    fx: ShardFixture,
    command: string,
    enqueued: number,
    credits: number,
    spec: object = {},
  ) {
    await fx.client("g").enqueueBatch({
      tasks: Array.from({ length: enqueued }, () => ({ command, ...spec }) as never),
    });
    const stream = new StreamDriver(fx.client("g"));
    stream.send({ ...SUB([command]), credits });
    await stream.next();
    return { stream, held: await stream.pushed(credits) };
  }

  it("applies acks sent after shutdown began, and ends as soon as it holds nothing", async () => {
    // a grace period longer than the test: the stream must end because it holds
    // nothing, not because the drain ran out of time
    const fx = await shardFixture({ graceMs: 60_000 });
    try {
      const { stream, held } = await holding(fx, "DRAIN", 5, 5, { maxAttempts: 1 });

      // the worker finishes its tasks while the shard worker is told to stop
      const stopping = fx.worker.stop();
      await new Promise((r) => setTimeout(r, 100));
      stream.send({ requestId: 1, acks: acks(held) });
      const settled = await stream.next();
      expect(settled?.settled?.acks.map((a) => a.code)).toEqual(held.map(() => Status.OK));
      await expect(stream.next()).rejects.toMatchObject({
        code: Status.UNAVAILABLE,
        details: expect.stringMatching(/shutting down/),
      });
      await stopping;

      await fx.restart();
      const stats = (await fx.client("g").queueStats({ command: "DRAIN" })).total!;
      // with max_attempts 1, a lease released by the shutdown would have sent its task to the DLQ
      expect(stats).toMatchObject({ completed: 5, dead: 0, leased: 0, ready: 0 });
    } finally {
      await fx.close();
    }
  }, 30_000);

  it("answers an ack the store applied before the drain's look at what the stream holds", async () => {
    const fx = await shardFixture({ graceMs: 60_000 });
    try {
      const { stream, held } = await holding(fx, "DRAIN_ACK", 1, 1);
      // the ack is applied in the store; its answer waits until the test lets it go
      const engine = fx.worker.engine;
      const ack = engine.ack.bind(engine);
      let applied!: () => void;
      let letGo!: () => void;
      const wasApplied = new Promise<void>((r) => (applied = r));
      const gate = new Promise<void>((r) => (letGo = r));
      engine.ack = async (...args) => {
        engine.ack = ack;
        const out = await ack(...args);
        applied();
        await gate;
        return out;
      };
      stream.send({ requestId: 1, acks: acks(held) });
      await wasApplied;
      // the drain asks the store what the stream holds: nothing, the ack was applied
      const stopping = fx.worker.stop();
      await new Promise((r) => setTimeout(r, 200));
      letGo();
      const settled = await stream.next();
      expect(settled?.settled?.acks.map((a) => a.code)).toEqual([Status.OK]);
      await expect(stream.next()).rejects.toMatchObject({ code: Status.UNAVAILABLE });
      await stopping;
    } finally {
      await fx.close();
    }
  }, 30_000);

  it("pushes nothing more, and releases what is still held when the drain is over", async () => {
    const fx = await shardFixture({ graceMs: 1_000 });
    try {
      const { stream, held } = await holding(fx, "DRAIN_LATE", 10, 3, { maxAttempts: 1 });

      const stopping = fx.worker.stop();
      await new Promise((r) => setTimeout(r, 100));
      // more credits, and one ack: the ack is answered, no task is pushed
      stream.send({ requestId: 1, credits: 5, acks: acks(held.slice(0, 1)) });
      const answers = [];
      for (;;) {
        try {
          answers.push(await stream.next());
        } catch (err) {
          expect(err).toMatchObject({ code: Status.UNAVAILABLE });
          break;
        }
      }
      expect(answers).toEqual([
        expect.objectContaining({ settled: expect.objectContaining({ requestId: 1 }) }),
      ]);
      await stopping;

      await fx.restart();
      const after = fx.client("g");
      // on their only attempt, and not dead-lettered: the worker did not fail them
      expect((await after.queueStats({ command: "DRAIN_LATE" })).total).toMatchObject({
        completed: 1,
        leased: 0,
        dead: 0,
        ready: 9,
      });
      for (const t of held.slice(1)) {
        const { task } = await after.getTask({ command: "DRAIN_LATE", taskId: t.task!.id });
        expect(task).toMatchObject({ attempts: 0, lastError: SHUT_DOWN_WHILE_HELD });
      }
    } finally {
      await fx.close();
    }
  }, 30_000);
});

describe("a LeaseStream whose worker stopped reading, at shutdown", () => {
  it("releases what it holds, uncounted, once the drain runs out, not when the grace period is over", async () => {
    // the drain runs out at 80% of it: a second before the grace period is over
    const graceMs = 5_000;
    const fx = await shardFixture({ graceMs });
    try {
      const queue = { command: "UNREAD", tenant: "g" };
      const n = 60;
      // the worker reads its subscription and a push, then stops reading: the stream
      // writes what the transport takes, then waits to write the next
      const { leased, stop } = await slowReader(fx, "g", "UNREAD", n, 2);
      expect(leased).toBeLessThan(n);
      const started = Date.now();
      const stopping = fx.worker.stop();
      await eventually(async () => (await fx.worker.engine.stats(queue)).leased === 0, 10_000);
      // (the call itself, waiting to write, ends only when the grace period is over)
      expect(Date.now() - started).toBeLessThan(graceMs);
      await stopping;
      await stop();
      await fx.restart();
      // nothing dead-lettered on its only attempt: the worker did not fail them
      expect((await fx.client("g").queueStats({ command: "UNREAD" })).total).toMatchObject({
        leased: 0,
        dead: 0,
        ready: n,
      });
    } finally {
      await fx.close();
    }
  }, 30_000);
});

describe("an EnqueueStream at shutdown", () => {
  it("answers what it read, reads nothing more, and ends with UNAVAILABLE at once", async () => {
    // a grace period longer than the test: the stream must not hold the shutdown
    const fx = await shardFixture({ graceMs: 60_000 });
    try {
      const outbox = new Channel<EnqueueStreamRequest>();
      const batch = (seq: number) => ({ seq, tasks: [{ command: "DRAIN_ENQ" }] as never });
      const answers: number[] = [];
      const ended = (async () => {
        try {
          for await (const res of fx.client("g").enqueueStream(outbox)) answers.push(res.seq);
        } catch (err) {
          return err;
        }
      })();
      outbox.push(batch(1));
      await eventually(async () => answers.length === 1);

      const stopping = fx.worker.stop();
      await new Promise((r) => setTimeout(r, 100));
      outbox.push(batch(2)); // sent once the shard worker drains: neither read nor stored
      expect(await ended).toMatchObject({
        code: Status.UNAVAILABLE,
        details: expect.stringMatching(/shutting down/),
      });
      await stopping;
      expect(answers).toEqual([1]);

      await fx.restart();
      expect((await fx.client("g").queueStats({ command: "DRAIN_ENQ" })).total?.ready).toBe(1);
    } finally {
      await fx.close();
    }
  }, 30_000);
});

describe("graceful shutdown with a store that stops answering", () => {
  it("ends within the grace period, cutting the store connection its background work waits on", async () => {
    const { fx, relay, close } = await relayedShardFixture({ graceMs: 1_000, dueIdleMs: 100 });
    try {
      await fx.client("t-silent").enqueue({ command: "SILENT" });
      // the store's host goes away without closing anything: calls are sent, never answered
      relay.silence();
      await new Promise((r) => setTimeout(r, 500)); // the due loop has asked it something
      const started = Date.now();
      const stopped = await Promise.race([
        fx.worker.stop().then(() => true),
        new Promise<false>((r) => setTimeout(() => r(false), 8_000)),
      ]);
      expect(stopped).toBe(true);
      // the grace period, and at most a second more (AFTER_GRACE_MS), give or take
      expect(Date.now() - started).toBeLessThan(4_000);
    } finally {
      await close();
    }
  }, 20_000);
});
