import { Status } from "nice-grpc";
import { createChannel, createClient } from "nice-grpc";
import { HealthDefinition } from "nice-grpc-server-health";
import { shardFixture, StreamDriver, SUB, type ShardFixture } from "./test/fixture";

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
