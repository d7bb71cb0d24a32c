import { Status } from "nice-grpc";
import type { ShardWorker } from "./shard-worker";
import { shardFixture, StreamDriver, eventually, SUB, type ShardFixture } from "./test/fixture";

/** Script calls of `operation` the worker has made so far. */
async function calls(worker: ShardWorker, operation: string): Promise<number> {
  const { values } = await worker.metrics.operation.get();
  const count = values.find(
    (v) =>
      v.metricName === "codeq_shard_operation_duration_seconds_count" &&
      v.labels.operation === operation,
  );
  return count?.value ?? 0;
}

/**
 * Holds the worker's next enqueue-lease calls (the real ones, run when released) so
 * a test can act while a handoff is in flight.
 */
function holdHandoffs(worker: ShardWorker): { held(): number; release(): void } {
  const engine = worker.engine;
  const real = engine.enqueueAndLease.bind(engine);
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let held = 0;
  engine.enqueueAndLease = async (...args) => {
    held++;
    await gate;
    return real(...args);
  };
  return {
    held: () => held,
    release() {
      engine.enqueueAndLease = real;
      open();
    },
  };
}

describe("an enqueue hands its tasks to a parked stream", () => {
  let fx: ShardFixture;
  // no safety-net re-wake: only the enqueue can deliver
  beforeAll(async () => (fx = await shardFixture({ rewakeMs: 3_600_000, dueIdleMs: 60_000 })));
  afterAll(() => fx.close());

  /**
   * A stream of `tenant` (with `roles`, if any) subscribed to `command` with `credits`,
   * once it is parked on the notifier.
   */
  async function parkedStream(
    [tenant, roles]: [string, string?],
    command: string,
    credits: number,
    subscribe: Record<string, unknown> = {},
  ): Promise<StreamDriver> {
    const queue = { command, tenant };
    const before = fx.worker.notifier.waitingOn(queue);
    const stream = new StreamDriver(fx.client(tenant, roles));
    stream.send({ ...SUB([command], subscribe), credits });
    await stream.next(); // subscribed
    await eventually(async () => fx.worker.notifier.waitingOn(queue) > before);
    return stream;
  }

  /** A parked stream, and an enqueue of one task that has claimed it, held in its handoff. */
  async function handoffInFlight(
    tenant: string,
    command: string,
    credits: number,
    subscribe: Record<string, unknown> = {},
  ) {
    const stream = await parkedStream([tenant], command, credits, subscribe);
    const hold = holdHandoffs(fx.worker);
    const enqueued = fx.client(tenant).enqueue({ command });
    await eventually(async () => hold.held() === 1);
    return { stream, hold, enqueued };
  }

  it("stores and leases in one store call, and the stream does not lease again", async () => {
    const stream = await parkedStream(["t-hand"], "HAND", 5);
    const [leases, handoffs] = [
      await calls(fx.worker, "lease"),
      await calls(fx.worker, "enqueue_lease"),
    ];
    const { results } = await fx.client("t-hand").enqueueBatch({
      tasks: ["a", "b", "c"].map((p) => ({ command: "HAND", payload: Buffer.from(p) }) as never),
    });
    const pushed = (await stream.next())!.tasks!.tasks;
    expect(pushed.map((t) => t.task!.id)).toEqual(results.map((r) => r.taskId));
    expect(pushed.map((t) => t.task!.payload.toString())).toEqual(["a", "b", "c"]);
    expect(await calls(fx.worker, "enqueue_lease")).toBe(handoffs + 1);
    // the stream is parked again, having found nothing left to lease
    await eventually(
      async () => fx.worker.notifier.waitingOn({ command: "HAND", tenant: "t-hand" }) > 0,
    );
    expect(await calls(fx.worker, "lease")).toBe(leases);
    // the handed-off tasks settle like any others
    stream.send({
      requestId: 1,
      acks: pushed.map((t) => ({ leaseToken: t.leaseToken, result: Buffer.alloc(0) })),
    });
    expect((await stream.next())!.settled!.acks.map((a) => a.code)).toEqual([0, 0, 0]);
    stream.close();
  });

  it("hands a stream only what its credits cover; the next stream leases the rest", async () => {
    const first = await parkedStream(["t-split"], "SPLIT", 2);
    const second = await parkedStream(["t-split"], "SPLIT", 10);
    const handoffs = await calls(fx.worker, "enqueue_lease");
    await fx.client("t-split").enqueueBatch({
      tasks: Array.from({ length: 5 }, () => ({ command: "SPLIT" }) as never),
    });
    // the oldest parked stream takes its 2 in the enqueue's call; the other is woken for 3
    expect((await first.next())!.tasks!.tasks).toHaveLength(2);
    expect(await calls(fx.worker, "enqueue_lease")).toBe(handoffs + 1);
    let got = 0;
    while (got < 3) got += (await second.next())!.tasks!.tasks.length;
    expect(got).toBe(3);
    await new Promise((r) => setTimeout(r, 100));
    expect(first.pending).toBe(0);
    expect((await fx.client("t-split").queueStats({ command: "SPLIT" })).total).toMatchObject({
      leased: 5,
      ready: 0,
    });
    first.close();
    second.close();
  });

  it("hands tasks to a stream serving every tenant of the command", async () => {
    const stream = await parkedStream(["ops", "worker,cross-tenant-worker"], "ALLT", 5, {
      allTenants: true,
    });
    const handoffs = await calls(fx.worker, "enqueue_lease");
    const { taskId } = await fx.client("t-any").enqueue({ command: "ALLT" });
    expect((await stream.next())!.tasks!.tasks.map((t) => t.task!.id)).toEqual([taskId]);
    expect(await calls(fx.worker, "enqueue_lease")).toBe(handoffs + 1);
    stream.close();
  });

  it("enqueues that arrive together each hand off to one parked stream while its credits last", async () => {
    // max_batch 2 and 4 credits: two handoffs of 2 fit, a third enqueue finds none set aside
    const stream = await parkedStream(["t-many"], "MANY", 4, { maxBatch: 2 });
    const [leases, plain] = [await calls(fx.worker, "lease"), await calls(fx.worker, "enqueue")];
    const hold = holdHandoffs(fx.worker);
    const first = fx.client("t-many").enqueue({ command: "MANY" });
    const second = fx.client("t-many").enqueue({ command: "MANY" });
    await eventually(async () => hold.held() === 2);
    // the stream is still parked, its credits all set aside
    expect(fx.worker.notifier.waitingOn({ command: "MANY", tenant: "t-many" })).toBe(1);
    const third = await fx.client("t-many").enqueue({ command: "MANY" });
    expect(await calls(fx.worker, "enqueue")).toBe(plain + 1);
    hold.release();
    const ids = [(await first).taskId, (await second).taskId, third.taskId];
    const got: string[] = [];
    while (got.length < 3) got.push(...(await stream.next())!.tasks!.tasks.map((t) => t.task!.id));
    expect(got.sort()).toEqual([...ids].sort());
    // the handoffs left credits unused (the first took the third task with its own);
    // with them back the stream leases once more, soon after its last push on a busy
    // machine
    await eventually(async () => (await calls(fx.worker, "lease")) === leases + 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await calls(fx.worker, "lease")).toBe(leases + 1); // and no more
    stream.close();
  });

  it("a burst of enqueues hands off to one parked stream at most eight at a time", async () => {
    // max_batch 1 and 40 credits: each of twenty enqueues could set one aside, and a
    // worker that reads slowly would be sent all twenty ahead of its reading
    const stream = await parkedStream(["t-burst"], "BURST", 40, { maxBatch: 1 });
    const plain = await calls(fx.worker, "enqueue");
    const hold = holdHandoffs(fx.worker);
    const sent = Array.from({ length: 20 }, () =>
      fx.client("t-burst").enqueue({ command: "BURST" }),
    );
    // those past the bound are stored without a handoff, for the stream to lease
    await eventually(async () => (await calls(fx.worker, "enqueue")) === plain + 12);
    expect(hold.held()).toBe(8);
    hold.release();
    const ids = (await Promise.all(sent)).map((r) => r.taskId);
    const got: string[] = [];
    while (got.length < 20) got.push(...(await stream.next())!.tasks!.tasks.map((t) => t.task!.id));
    expect(got.sort()).toEqual(ids.sort());
    stream.close();
  });

  it("concurrent handoffs take parked streams in turn", async () => {
    // each handoff sets 2 of a stream's 10 credits aside
    const a = await parkedStream(["t-turn"], "TURN", 10, { maxBatch: 2 });
    const b = await parkedStream(["t-turn"], "TURN", 10, { maxBatch: 2 });
    const hold = holdHandoffs(fx.worker);
    const sent = [1, 2, 3, 4].map(() => fx.client("t-turn").enqueue({ command: "TURN" }));
    await eventually(async () => hold.held() === 4);
    hold.release();
    await Promise.all(sent);
    const count = async (s: StreamDriver) => {
      let n = 0;
      while (n < 2) n += (await s.next())!.tasks!.tasks.length;
      return n;
    };
    expect([await count(a), await count(b)]).toEqual([2, 2]);
    await new Promise((r) => setTimeout(r, 50));
    expect(a.pending + b.pending).toBe(0);
    a.close();
    b.close();
  });

  it("a stream waiting for credits gets those a handoff did not use", async () => {
    // the first enqueue claims the stream and sets its 2 credits aside; it waits
    const { stream, hold, enqueued: first } = await handoffInFlight("t-back", "BACK", 2);
    // meanwhile a second task, and one more credit: the stream leases it and is out of credits
    await fx.client("t-back").enqueue({ command: "BACK" });
    stream.send({ credits: 1 });
    expect((await stream.next())!.tasks!.tasks).toHaveLength(1);
    // the handoff leases 1 of the 2 it set aside: 1 credit comes back to the stream
    hold.release();
    await first;
    expect((await stream.next())!.tasks!.tasks).toHaveLength(1);
    // with it, the stream takes the next task
    const { taskId } = await fx.client("t-back").enqueue({ command: "BACK" });
    expect((await stream.next())!.tasks!.tasks.map((t) => t.task!.id)).toEqual([taskId]);
    stream.close();
  });

  it("a stream that ends during its handoff gives back what it was handed at once", async () => {
    const { stream, hold, enqueued } = await handoffInFlight("t-gone", "GONE", 2);
    const open = await fx.worker.metrics.streamsOpen();
    stream.close();
    // the session has ended (its pump too) before the handoff comes back
    await eventually(async () => (await fx.worker.metrics.streamsOpen()) < open);
    hold.release();
    await enqueued;
    await eventually(async () => {
      const { total } = await fx.client("t-gone").queueStats({ command: "GONE" });
      return total?.ready === 1 && total.leased === 0;
    });
  });

  it("a stream whose credits are all set aside does not stand in for a long poll behind it", async () => {
    // the stream's 2 credits go to a held handoff; then a long poll parks behind it
    const { stream, hold, enqueued } = await handoffInFlight("t-poll", "POLL", 2);
    const queue = { command: "POLL", tenant: "t-poll" };
    const poll = fx.client("t-poll").lease({ commands: ["POLL"], maxTasks: 1, waitMs: 20_000 });
    await eventually(async () => fx.worker.notifier.waitingOn(queue) === 2);
    // a plain enqueue (no stream can take it) wakes the long poll, well before its wait ends
    const sent = Date.now();
    const { taskId } = await fx.client("t-poll").enqueue({ command: "POLL" });
    expect((await poll).tasks.map((t) => t.task!.id)).toEqual([taskId]);
    expect(Date.now() - sent).toBeLessThan(10_000);
    hold.release();
    await enqueued;
    expect((await stream.next())!.tasks!.tasks).toHaveLength(1);
    stream.close();
  });

  it("a stream withdrawing its credits does not stand in for a long poll behind it", async () => {
    // one of the stream's 2 credits goes to a held handoff; a long poll parks behind it
    const queue = { command: "WPOLL", tenant: "t-wpoll" };
    const { stream, hold, enqueued } = await handoffInFlight("t-wpoll", "WPOLL", 2, {
      maxBatch: 1,
    });
    const poll = fx.client("t-wpoll").lease({ commands: ["WPOLL"], maxTasks: 1, waitMs: 5_000 });
    await eventually(async () => fx.worker.notifier.waitingOn(queue) === 2);
    // the withdrawal waits for the handoff; the stream takes no task meanwhile
    stream.send({ withdrawCredits: true, requestId: 7 });
    await new Promise((r) => setTimeout(r, 100));
    const sent = Date.now();
    const { taskId } = await fx.client("t-wpoll").enqueue({ command: "WPOLL" });
    // the long poll is woken, not the stream (whose one free credit is being withdrawn)
    expect((await poll).tasks.map((t) => t.task!.id)).toEqual([taskId]);
    expect(Date.now() - sent).toBeLessThan(2_500);
    hold.release();
    await enqueued;
    expect((await stream.next())!.tasks!.tasks).toHaveLength(1);
    expect((await stream.next())!.withdrawn).toEqual({ requestId: 7, credits: 1, held: 1 });
    stream.close();
  });

  it("a stream that ends with two handoffs in flight gives back what both hand it", async () => {
    const stream = await parkedStream(["t-gone2"], "GONE2", 4, { maxBatch: 2 });
    const hold = holdHandoffs(fx.worker);
    const sent = [1, 2].map(() => fx.client("t-gone2").enqueue({ command: "GONE2" }));
    await eventually(async () => hold.held() === 2);
    const open = await fx.worker.metrics.streamsOpen();
    stream.close();
    await eventually(async () => (await fx.worker.metrics.streamsOpen()) < open);
    expect(fx.worker.notifier.waitingOn({ command: "GONE2", tenant: "t-gone2" })).toBe(0);
    hold.release();
    await Promise.all(sent);
    await eventually(async () => {
      const { total } = await fx.client("t-gone2").queueStats({ command: "GONE2" });
      return total?.ready === 2 && total.leased === 0;
    });
  });

  it("credits set aside for a handoff still count against the stream's credit cap", async () => {
    // the cap is 10,000: a handoff sets 100 aside, 9,900 stay; 100 more would exceed it
    const { stream, hold, enqueued } = await handoffInFlight("t-cap", "CAP", 10_000);
    stream.send({ credits: 100 });
    await expect(stream.next()).rejects.toMatchObject({ code: Status.RESOURCE_EXHAUSTED });
    hold.release();
    await enqueued;
  });

  it("an enqueue whose answer is lost after the store still wakes the long poll waiting", async () => {
    const engine = fx.worker.engine;
    const real = engine.enqueue.bind(engine);
    // the script runs and stores the task, then its answer is lost
    engine.enqueue = async (...args) => {
      await real(...args);
      throw new Error("connection lost before the answer");
    };
    try {
      const poll = fx.client("t-lost").lease({ commands: ["LOST"], maxTasks: 1, waitMs: 20_000 });
      await eventually(
        async () => fx.worker.notifier.waitingOn({ command: "LOST", tenant: "t-lost" }) === 1,
      );
      const sent = Date.now();
      await expect(fx.client("t-lost").enqueue({ command: "LOST" })).rejects.toBeDefined();
      expect((await poll).tasks).toHaveLength(1);
      expect(Date.now() - sent).toBeLessThan(10_000);
    } finally {
      engine.enqueue = real;
    }
  });
});
