import { Status } from "nice-grpc";
import { RedisServer, startRelay, type Relay } from "@codeq/testing";
import { shardFixture, StreamDriver, SUB, type ShardFixture } from "./test/fixture";

/**
 * The store goes away for longer than ioredis's retries (a KVRocks restart), while a
 * stream holds a task its worker is running and its pump leases for a new credit.
 */
describe("a shard worker whose store restarts under a stream", () => {
  let server: RedisServer;
  let relay: Relay;
  let fx: ShardFixture;
  beforeAll(async () => {
    server = await RedisServer.start();
    relay = await startRelay(server.host, server.port);
    fx = await shardFixture({ redisUrl: `redis://127.0.0.1:${relay.port}` }, server);
  });
  afterAll(async () => {
    await fx.close();
    await relay.close();
    await server.stop();
  });

  it("keeps the stream and what it holds; leases again once the store is back", async () => {
    const c = fx.client("t-restart");
    const s = new StreamDriver(c);
    s.send({ ...SUB(["RESTART"]), credits: 1 });
    await s.next(); // subscribed
    const { taskId } = await c.enqueue({ command: "RESTART" });
    const [a] = (await s.next(3_000))!.tasks!.tasks; // the worker is running a
    const b = await c.enqueue({ command: "RESTART" }); // ready, waits for a credit

    relay.restart(1_500);
    s.send({ credits: 1 }); // the pump leases while the store is away: the lease fails
    // once the store is back, b is pushed on the same stream
    const next = await s.next(10_000);
    expect(next?.tasks?.tasks.map((t) => t.task!.id)).toEqual([b.taskId]);
    // a was not released under its worker: its ack is applied
    s.send({ requestId: 1, acks: [{ leaseToken: a!.leaseToken, result: Buffer.alloc(0) }] });
    expect((await s.next(3_000))?.settled?.acks.map((x) => x.code)).toEqual([Status.OK]);
    const task = (await c.getTask({ command: "RESTART", taskId })).task!;
    expect(task.attempts).toBe(1);
    expect(task.lastError).toBe("");
    s.close();
  }, 20_000);
});
