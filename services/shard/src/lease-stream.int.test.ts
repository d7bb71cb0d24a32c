import { createChannel, createClient, Metadata, Status } from "nice-grpc";
import { startRelay } from "@codeq/testing";
import {
  LeaseStreamRequest,
  QueueServiceDefinition,
  TaskState,
  type LeaseStreamResponse,
} from "@codeq/proto";
import {
  shardFixture,
  StreamDriver,
  eventually,
  slowReader,
  SUB,
  type ShardFixture,
} from "./test/fixture";

describe("LeaseStream on a shard worker", () => {
  let fx: ShardFixture;
  // no safety-net re-wake and a lazy due loop: only notifications can deliver promptly
  beforeAll(async () => (fx = await shardFixture({ rewakeMs: 3_600_000, dueIdleMs: 60_000 })));
  afterAll(() => fx.close());

  it("pushes a task enqueued while its lease read the queue empty, though the re-wake forgot the queue meanwhile", async () => {
    const c = fx.client("t-forget");
    const engine = fx.worker.engine;
    const lease = engine.lease.bind(engine);
    let leased!: () => void;
    const inLease = new Promise<void>((resolve) => (leased = resolve));
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    // the stream's first lease finds nothing, and its answer is held
    engine.lease = async (...args) => {
      engine.lease = lease;
      const got = await lease(...args);
      leased();
      await gate;
      return got;
    };
    const stream = new StreamDriver(c);
    stream.send({ ...SUB(["FORGET"]), credits: 1 });
    await stream.next(); // subscribed
    await inLease;
    const { taskId } = await c.enqueue({ command: "FORGET" }); // nobody is parked yet
    fx.worker.notifier.wakeOnePerTopic(); // nobody waits on the queue: forgotten
    open();
    const pushed = await stream.next(3_000);
    expect(pushed?.tasks?.tasks.map((t) => t.task!.id)).toEqual([taskId]);
    stream.close();
  });

  it("leases for a worker that reads slowly only what the transport takes, and gives back, uncounted, the pushes it never wrote", async () => {
    const queue = { command: "SLOW", tenant: "t-slow" };
    const n = 40;
    // the worker reads its subscription and two pushes, then stops reading: the stream
    // leases what the transport takes and two pushes more, then waits, credits left
    const { leased, stop } = await slowReader(fx, "t-slow", "SLOW", n, 3);
    expect(leased).toBeGreaterThan(2);
    expect(leased).toBeLessThan(n);
    await stop();
    // what was written may have reached the worker: released, its one attempt counted
    // (dead); what the stream never wrote is ready again, no attempt counted
    await eventually(async () => (await fx.worker.engine.stats(queue)).leased === 0);
    const after = await fx.worker.engine.stats(queue);
    expect(after.dead).toBeGreaterThanOrEqual(2);
    expect(after.dead).toBeLessThanOrEqual(leased - 1); // the last push was queued, never written
    expect(after.ready).toBeGreaterThan(0);
    expect(after.ready + after.dead).toBe(n);
  });

  /** Tasks in the messages `responses` yields until the stream ends, or is quiet for 1 s. */
  async function tasksUntilQuiet(responses: AsyncIterator<LeaseStreamResponse>): Promise<number> {
    let n = 0;
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const quiet = new Promise<"quiet">((r) => (timer = setTimeout(() => r("quiet"), 1_000)));
      const ended = { done: true as const, value: undefined };
      const next = await Promise.race([responses.next().catch(() => ended), quiet]);
      clearTimeout(timer);
      if (next === "quiet" || next.done) return n;
      n += next.value.tasks?.tasks.length ?? 0;
    }
  }

  it("gives back, uncounted, what it had queued for a worker that half-closes, and writes it no more", async () => {
    const queue = { command: "SLOWHC", tenant: "t-slowhc" };
    const n = 40;
    const { leased, read, requests, responses } = await slowReader(fx, "t-slowhc", "SLOWHC", n, 3);
    requests.close(); // the worker half-closes, and reads on to the end
    const received = read.filter((m) => m.tasks).length + (await tasksUntilQuiet(responses));
    await eventually(async () => (await fx.worker.engine.stats(queue)).leased === 0);
    const after = await fx.worker.engine.stats(queue);
    // what reached the worker was an attempt (dead: one each); what waited to be
    // written was not written, and is ready again
    expect(after.dead).toBe(received);
    expect(received).toBeLessThan(leased);
    expect(after.ready + after.dead).toBe(n);
  });

  it("gives back, uncounted, what it had queued for a worker whose stream ends with an error, and writes it no more", async () => {
    const queue = { command: "SLOWERR", tenant: "t-slowerr" };
    const n = 40;
    const { leased, read, requests, responses } = await slowReader(
      fx,
      "t-slowerr",
      "SLOWERR",
      n,
      3,
    );
    // a bad request (a second subscribe) ends the stream with INVALID_ARGUMENT
    requests.push(LeaseStreamRequest.fromPartial(SUB(["SLOWERR"])));
    let received = read.filter((m) => m.tasks).length;
    let status: Status | undefined;
    try {
      for (let m = await responses.next(); !m.done; m = await responses.next())
        received += m.value.tasks?.tasks.length ?? 0;
    } catch (err) {
      status = (err as { code?: Status }).code;
    }
    expect(status).toBe(Status.INVALID_ARGUMENT);
    await eventually(async () => (await fx.worker.engine.stats(queue)).leased === 0);
    const after = await fx.worker.engine.stats(queue);
    // what reached the worker was an attempt (dead: one each); what waited to be
    // written was not written after the error, and is ready again
    expect(after.dead).toBe(received);
    expect(received).toBeLessThan(leased);
    expect(after.ready + after.dead).toBe(n);
    requests.close();
  });

  it("writes no more of what it had queued once InterruptLeaseStream released it", async () => {
    const queue = { command: "SLOWINT", tenant: "t-slowint" };
    const n = 40;
    const { leased, read, responses, stop } = await slowReader(fx, "t-slowint", "SLOWINT", n, 3);
    const streamId = read[0]!.subscribed!.streamId;
    expect(await fx.shardClient().interruptLeaseStream({ streamId })).toEqual({
      released: leased,
    });
    const received = read.filter((m) => m.tasks).length + (await tasksUntilQuiet(responses));
    expect(received).toBeLessThan(leased);
    expect(await fx.worker.engine.stats(queue)).toMatchObject({ ready: n, leased: 0, dead: 0 });
    await stop();
  });

  it("wakes the stream behind one that backs up with tasks left ready", async () => {
    const c = fx.client("t-behind");
    // the first stream in line will back up: its connection passes nothing once it
    // subscribed, so HTTP/2 flow control stops its pushes; the other one reads
    const relay = await startRelay("127.0.0.1", fx.worker.port);
    const channel = createChannel(`127.0.0.1:${relay.port}`);
    const metadata = new Metadata({ "x-codeq-tenant": "t-behind" });
    const stuck = new StreamDriver(
      createClient(QueueServiceDefinition, channel, { "*": { metadata } }),
    );
    const reading = new StreamDriver(fx.client("t-behind"));
    try {
      reading.send({ ...SUB(["BEHIND"]), credits: 1_000 });
      await reading.next(); // subscribed
      await eventually(async () => fx.worker.notifier.parked === 1);
      stuck.send({ ...SUB(["BEHIND"], { maxBatch: 1 }), credits: 1_000 });
      await stuck.next(); // subscribed
      await eventually(async () => fx.worker.notifier.parked === 2);
      relay.silenceOpen();
      // the enqueue offers the oldest waiter a handoff (none: nothing is ready yet) and
      // puts it last in line, behind the one that will back up
      // (due in 3 s: the batch of 1,000 is stored well before, on a slow machine too)
      const runAtMs = Date.now() + 3_000;
      await c.enqueueBatch({
        tasks: Array.from({ length: 1_000 }, () => ({ command: "BEHIND", runAtMs })),
      });
      expect(Date.now()).toBeLessThan(runAtMs);
      // all due at once: one notification from the due loop, of far more than the first
      // in line leases before it backs up (small tasks: no lease stops at its byte
      // bound, which would announce what it left); no re-wake here
      const pushed = await reading.next(5_000);
      expect(pushed?.tasks?.tasks.length).toBeGreaterThan(0);
    } finally {
      reading.close();
      stuck.abort.abort();
      channel.close();
      await relay.close();
    }
  });

  it("pushes a task enqueued after the worker subscribed, without polling", async () => {
    const producer = fx.client("t-push");
    const stream = new StreamDriver(fx.client("t-push"));
    stream.send({ ...SUB(["PUSH"]), credits: 5 });
    const subscribed = await stream.next();
    expect(subscribed?.subscribed?.leaseDurationMs).toBe(30_000);
    await eventually(async () => fx.worker.notifier.parked > 0);
    const { taskId } = await producer.enqueue({ command: "PUSH", payload: Buffer.from("hello") });
    const pushed = await stream.next();
    expect(pushed?.tasks?.tasks.map((t) => t.task?.id)).toEqual([taskId]);
    expect(pushed?.tasks?.tasks[0]?.task?.payload).toEqual(Buffer.from("hello"));
    expect(pushed?.tasks?.tasks[0]?.leaseToken).toMatch(/^c1~a~PUSH~t-push~/);
    stream.close();
  });

  it("never has more tasks in flight than credits granted", async () => {
    const producer = fx.client("t-credit");
    await producer.enqueueBatch({
      tasks: Array.from({ length: 5 }, () => ({ command: "CREDIT" }) as never),
    });
    const stream = new StreamDriver(fx.client("t-credit"));
    stream.send({ ...SUB(["CREDIT"]), credits: 2 });
    await stream.next(); // subscribed
    const first = await stream.next();
    expect(first?.tasks?.tasks).toHaveLength(2);
    await new Promise((r) => setTimeout(r, 200));
    expect(stream.pending).toBe(0);
    expect((await producer.queueStats({ command: "CREDIT" })).total).toMatchObject({
      leased: 2,
      ready: 3,
    });
    stream.send({ credits: 3 });
    let got = 0;
    while (got < 3) got += (await stream.next())?.tasks?.tasks.length ?? 0;
    expect(got).toBe(3);
    stream.close();
  });

  it("takes back unused credits on withdraw_credits: nothing more is pushed, what is held stays held", async () => {
    const producer = fx.client("t-withdraw");
    const stream = new StreamDriver(fx.client("t-withdraw"));
    stream.send({ ...SUB(["WD"]), credits: 5 });
    expect((await stream.next())?.subscribed?.withdrawCredits).toBe(true);
    await producer.enqueueBatch({ tasks: [{ command: "WD" }, { command: "WD" }] as never });
    const held = await stream.pushed(2);
    stream.send({ withdrawCredits: true, requestId: 9 });
    expect((await stream.next())?.withdrawn).toEqual({ requestId: 9, credits: 3, held: 2 });
    await producer.enqueueBatch({ tasks: [{ command: "WD" }, { command: "WD" }] as never });
    await new Promise((r) => setTimeout(r, 300));
    expect(stream.pending).toBe(0);
    // one lease settled by a unary call, which the stream does not see: the answer's
    // count of what it holds leaves it out all the same
    const ack = (t: (typeof held)[number]) => ({
      leaseToken: t.leaseToken,
      result: Buffer.alloc(0),
    });
    expect((await producer.ack({ items: [ack(held[0]!)] })).results[0]!.code).toBe(Status.OK);
    stream.send({ withdrawCredits: true, requestId: 10 });
    expect((await stream.next())?.withdrawn).toEqual({ requestId: 10, credits: 0, held: 1 });
    // the lease pushed before is still the stream's to settle
    stream.send({ requestId: 11, acks: [ack(held[1]!)] });
    expect((await stream.next())?.settled?.acks.map((a) => a.code)).toEqual([Status.OK]);
    // withdrawn and granted in one message: exactly the new credits are left
    stream.send({ withdrawCredits: true, credits: 1, requestId: 12 });
    expect((await stream.next())?.withdrawn).toEqual({ requestId: 12, credits: 0, held: 0 });
    expect(await stream.pushed(1)).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 200));
    expect(stream.pending).toBe(0);
    expect((await producer.queueStats({ command: "WD" })).total).toMatchObject({
      leased: 1,
      ready: 1,
    });
    stream.close();
  });

  it("withdraw_credits while enqueues hand tasks to the stream: each credit is pushed or taken back, never both", async () => {
    const producer = fx.client("t-withdraw-race");
    const credits = 40;
    for (let round = 0; round < 5; round++) {
      const command = `WDR${round}`;
      const stream = new StreamDriver(fx.client("t-withdraw-race"));
      stream.send({ ...SUB([command]), credits });
      await stream.next(); // subscribed
      await eventually(async () => fx.worker.notifier.parked > 0);
      // one-task enqueues, each handed to the parked stream by a script call of its
      // own, and the withdrawal sent while they are on their way
      const enqueues = Array.from({ length: credits }, () => producer.enqueue({ command }));
      await new Promise((r) => setTimeout(r, round));
      stream.send({ withdrawCredits: true, requestId: 100 + round });
      let pushed = 0;
      let withdrawn: number | undefined;
      while (withdrawn === undefined) {
        const res = await stream.next();
        pushed += res?.tasks?.tasks.length ?? 0;
        if (res?.withdrawn) withdrawn = res.withdrawn.credits;
      }
      await Promise.all(enqueues);
      await new Promise((r) => setTimeout(r, 100));
      expect(stream.pending).toBe(0); // nothing pushed after the answer
      expect(pushed + withdrawn).toBe(credits);
      // every lease taken went to the worker; the rest is ready for the next one
      expect((await producer.queueStats({ command })).total).toMatchObject({
        leased: pushed,
        ready: credits - pushed,
      });
      stream.close();
    }
  });

  it("answers acks, nacks and extends by request id; refuses stale and foreign tokens per item", async () => {
    const producer = fx.client("t-settle");
    await producer.enqueueBatch({
      tasks: Array.from({ length: 3 }, () => ({ command: "SETTLE" }) as never),
    });
    const stream = new StreamDriver(fx.client("t-settle"));
    stream.send({ ...SUB(["SETTLE"]), credits: 3 });
    await stream.next();
    const batch = (await stream.next())!.tasks!.tasks;
    const [a, b, c] = batch.map((t) => t.leaseToken);
    stream.send({
      requestId: 7,
      acks: [{ leaseToken: a!, result: Buffer.from("ok") }],
      nacks: [{ leaseToken: b!, delayMs: 60_000, error: "later", deadLetter: false }],
      extends: [{ leaseToken: c!, leaseDurationMs: 120_000 }],
    });
    const settled = (await stream.next())!.settled!;
    expect(settled.requestId).toBe(7);
    expect(settled.acks).toEqual([{ code: Status.OK, message: "" }]);
    expect(settled.nacks).toEqual([{ code: Status.OK, message: "" }]);
    expect(settled.extends[0]!.status).toEqual({ code: Status.OK, message: "" });
    expect(settled.extends[0]!.leaseDeadlineMs).toBeGreaterThan(Date.now() + 100_000);
    // the same nack again is a repeat (OK); a nack of the acked task is stale; another
    // tenant's token is not found
    const other = await fx
      .client("t-other")
      .ack({ items: [{ leaseToken: c!, result: Buffer.alloc(0) }] });
    expect(other.results[0]!.code).toBe(Status.NOT_FOUND);
    stream.send({
      requestId: 8,
      nacks: [
        { leaseToken: b!, error: "", deadLetter: false },
        { leaseToken: a!, error: "", deadLetter: false },
      ],
      acks: [{ leaseToken: "forged", result: Buffer.alloc(0) }],
    });
    const second = (await stream.next())!.settled!;
    expect(second.nacks.map((n) => n.code)).toEqual([Status.OK, Status.FAILED_PRECONDITION]);
    expect(second.acks[0]!.code).toBe(Status.NOT_FOUND);
    stream.close();
  });

  it("ends with INVALID_ARGUMENT on a message with one bad settlement, applying none of its others", async () => {
    const producer = fx.client("t-badset");
    await producer.enqueueBatch({
      tasks: Array.from({ length: 2 }, () => ({ command: "BADSET" }) as never),
    });
    const stream = new StreamDriver(fx.client("t-badset"));
    stream.send({ ...SUB(["BADSET"]), credits: 2 });
    await stream.next();
    const [a, b] = (await stream.next())!.tasks!.tasks.map((t) => t.leaseToken);
    stream.send({
      requestId: 1,
      acks: [{ leaseToken: a!, result: Buffer.alloc(0) }],
      nacks: [{ leaseToken: b!, delayMs: 86_400_001, error: "", deadLetter: false }],
    });
    await expect(stream.next()).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
      details: expect.stringMatching(/delay_ms must be at most/),
    });
    // the good ack was not applied: both leases were released as the stream ended
    await eventually(
      async () => (await producer.queueStats({ command: "BADSET" })).total?.ready === 2,
      3_000,
    );
    expect((await producer.queueStats({ command: "BADSET" })).total?.completed).toBe(0);
  });

  it("releases the leases a stream holds as soon as it closes", async () => {
    const producer = fx.client("t-release");
    await producer.enqueueBatch({
      tasks: Array.from({ length: 4 }, () => ({ command: "REL" }) as never),
    });
    const stream = new StreamDriver(fx.client("t-release"));
    stream.send({ ...SUB(["REL"]), credits: 4 });
    await stream.next();
    expect((await stream.next())?.tasks?.tasks).toHaveLength(4);
    stream.abort.abort(); // the worker goes away without a word
    await eventually(
      async () => (await producer.queueStats({ command: "REL" })).total?.ready === 4,
      3_000,
    );
    const again = new StreamDriver(fx.client("t-release"));
    again.send({ ...SUB(["REL"]), credits: 10 });
    await again.next();
    const redelivered = (await again.next())!.tasks!.tasks;
    expect(redelivered).toHaveLength(4);
    expect(
      redelivered.every(
        (t) => t.task?.attempts === 2 && t.task.lastError === "lease stream closed",
      ),
    ).toBe(true);
    again.close();
    await eventually(
      async () => (await producer.queueStats({ command: "REL" })).total?.ready === 4,
      3_000,
    );
  });

  it("pushes a delayed task when it falls due", async () => {
    const producer = fx.client("t-delay");
    const stream = new StreamDriver(fx.client("t-delay"));
    stream.send({ ...SUB(["DELAY"]), credits: 1 });
    await stream.next();
    const { taskId } = await producer.enqueue({ command: "DELAY", delayMs: 300 });
    const pushed = await stream.next(5_000);
    expect(pushed?.tasks?.tasks[0]?.task?.id).toBe(taskId);
    stream.close();
  });

  it("ends with INVALID_ARGUMENT when the first message does not subscribe, or subscribes twice", async () => {
    const noSub = new StreamDriver(fx.client("t-bad"));
    noSub.send({ credits: 1 });
    await expect(noSub.next()).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
      details: expect.stringMatching(/first LeaseStream message/),
    });
    const twice = new StreamDriver(fx.client("t-bad"));
    twice.send(SUB(["X"]));
    await twice.next();
    twice.send(SUB(["X"]));
    await expect(twice.next()).rejects.toMatchObject({ code: Status.INVALID_ARGUMENT });
    const tooMany = new StreamDriver(fx.client("t-bad"));
    tooMany.send({ ...SUB(["X"]), credits: 10_001 });
    await tooMany.next();
    await expect(tooMany.next()).rejects.toMatchObject({ code: Status.RESOURCE_EXHAUSTED });
    const crossTenant = new StreamDriver(fx.client("t-bad"));
    crossTenant.send(SUB(["X"], { allTenants: true }));
    await expect(crossTenant.next()).rejects.toMatchObject({ code: Status.PERMISSION_DENIED });
  });
});

describe("LeaseStream leases settled elsewhere", () => {
  let fx: ShardFixture;
  // at most 3 credits outstanding: a stream checks its tokens past 6
  beforeAll(
    async () =>
      (fx = await shardFixture({ rewakeMs: 3_600_000, dueIdleMs: 60_000, maxStreamCredits: 3 })),
  );
  afterAll(() => fx.close());

  const forgotten = async () =>
    (await fx.worker.metrics.registry.getSingleMetric("codeq_stream_leases_forgotten_total")!.get())
      .values[0]?.value ?? 0;

  /** How many times streams asked the store which leases they still hold. */
  const checks = async () =>
    (
      await fx.worker.metrics.registry
        .getSingleMetric("codeq_shard_operation_duration_seconds")!
        .get()
    ).values.find(
      (v) =>
        v.labels.operation === "still_leased" &&
        (v as { metricName?: string }).metricName?.endsWith("_count"),
    )?.value ?? 0;

  /** Grants `credits` and waits for the push they buy. */
  async function take(stream: StreamDriver, credits: number) {
    stream.send({ credits });
    return (await stream.next())!.tasks!.tasks;
  }

  it("still releases a lease on close when the worker settled every later one by unary calls", async () => {
    const producer = fx.client("t-unary");
    const { taskId: kept } = await producer.enqueue({ command: "UNARY" });
    const stream = new StreamDriver(fx.client("t-unary"));
    stream.send(SUB(["UNARY"]));
    await stream.next(); // subscribed
    expect((await take(stream, 1)).map((t) => t.task?.id)).toEqual([kept]);
    // twenty more, each acked by a unary call: the stream never sees them settled
    for (let i = 0; i < 20; i++) {
      await producer.enqueue({ command: "UNARY" });
      const [task] = await take(stream, 1);
      const { results } = await producer.ack({ items: [{ leaseToken: task!.leaseToken }] });
      expect(results[0]!.code).toBe(Status.OK);
    }
    stream.abort.abort();
    // the first task's lease is given back at once, not after its 30 s
    await eventually(
      async () =>
        (await producer.getTask({ command: "UNARY", taskId: kept })).task?.state ===
        TaskState.TASK_STATE_READY,
      3_000,
    );
    const task = (await producer.getTask({ command: "UNARY", taskId: kept })).task!;
    expect(task.lastError).toBe("lease stream closed");
    expect(await forgotten()).toBe(0);
    expect(await checks()).toBeGreaterThan(0);
  });

  it("forgets the oldest pushes' leases when it holds more unsettled than it may", async () => {
    const checksBefore = await checks();
    const producer = fx.client("t-greedy");
    await producer.enqueueBatch({
      tasks: Array.from({ length: 15 }, () => ({ command: "GREEDY" }) as never),
    });
    const stream = new StreamDriver(fx.client("t-greedy"));
    stream.send(SUB(["GREEDY"]));
    await stream.next();
    const pushes: string[][] = [];
    // five pushes of 3, none settled: past 6 held, a check finds all 9 leased and the
    // oldest 3 go; the next check is due past 9 held, and takes 12 down to 6
    const expected = [0, 0, 3, 3, 9];
    for (let i = 0; i < 5; i++) {
      pushes.push((await take(stream, 3)).map((t) => t.task!.id));
      await eventually(async () => (await forgotten()) === expected[i], 3_000);
    }
    expect((await checks()) - checksBefore).toBe(2); // not one per push
    stream.abort.abort();
    const stateOf = async (id: string) =>
      (await producer.getTask({ command: "GREEDY", taskId: id })).task!.state;
    await eventually(
      async () => (await stateOf(pushes[4]![0]!)) === TaskState.TASK_STATE_READY,
      3_000,
    );
    for (const id of pushes.slice(3).flat())
      expect(await stateOf(id)).toBe(TaskState.TASK_STATE_READY);
    // the forgotten ones expire instead
    for (const id of pushes.slice(0, 3).flat())
      expect(await stateOf(id)).toBe(TaskState.TASK_STATE_LEASED);
  });
});

describe("LeaseStream on a shard worker whose store fails a settlement", () => {
  it("answers those items with the failure and goes on; the acks sent again are applied", async () => {
    const fx = await shardFixture();
    try {
      const c = fx.client("t-flaky");
      await c.enqueueBatch({
        tasks: Array.from({ length: 3 }, () => ({ command: "FLAKY" }) as never),
      });
      const stream = new StreamDriver(c);
      stream.send({ ...SUB(["FLAKY"]), credits: 3 });
      await stream.next();
      const held = await stream.pushed(3);
      const acks = held.map((t) => ({ leaseToken: t.leaseToken, result: Buffer.alloc(0) }));

      // the store fails the next ack call once (a dropped connection after its retries)
      const engine = fx.worker.engine;
      const ack = engine.ack.bind(engine);
      engine.ack = async () => {
        engine.ack = ack;
        throw new Error("Connection is closed.");
      };
      stream.send({ requestId: 1, acks });
      const failed = await stream.next();
      expect(failed?.settled?.acks.map((a) => a.code)).toEqual(held.map(() => Status.UNAVAILABLE));
      expect(failed?.settled?.acks[0]?.message).toMatch(/Connection is closed/);

      stream.send({ requestId: 2, acks });
      const settled = await stream.next();
      expect(settled?.settled?.acks.map((a) => a.code)).toEqual(held.map(() => Status.OK));
      expect((await c.queueStats({ command: "FLAKY" })).total).toMatchObject({
        completed: 3,
        leased: 0,
      });
      stream.close();
    } finally {
      await fx.close();
    }
  });
});

describe("LeaseStream from a worker that vanishes without closing its connection", () => {
  it("is ended by the server's keepalive pings, and its lease released", async () => {
    const fx = await shardFixture({ keepaliveMs: 300 });
    const relay = await startRelay("127.0.0.1", fx.worker.port);
    const channel = createChannel(`127.0.0.1:${relay.port}`);
    try {
      await fx.client("t-gone").enqueue({ command: "GONE" });
      const metadata = new Metadata({ "x-codeq-tenant": "t-gone" });
      const worker = createClient(QueueServiceDefinition, channel, { "*": { metadata } });
      const stream = new StreamDriver(worker);
      stream.send({ ...SUB(["GONE"]), credits: 1 });
      await stream.next();
      expect((await stream.next())?.tasks?.tasks).toHaveLength(1);

      relay.silence(); // the worker's host is gone: no FIN, no RST, nothing
      const stats = () => fx.client("t-gone").queueStats({ command: "GONE" });
      await eventually(async () => (await stats()).total?.ready === 1, 5_000);
      expect((await stats()).total).toMatchObject({ ready: 1, leased: 0 });
      stream.abort.abort();
    } finally {
      channel.close();
      await relay.close();
      await fx.close();
    }
  });
});

describe("LeaseStream on a shard worker whose batches are small", () => {
  it("takes a subscription that leaves max_batch unset, and pushes batches within the limit", async () => {
    const fx = await shardFixture({ maxBatch: 50 });
    try {
      await fx.client("t-small").enqueueBatch({
        tasks: Array.from({ length: 50 }, () => ({ command: "SMALL" }) as never),
      });
      await fx.client("t-small").enqueueBatch({
        tasks: Array.from({ length: 30 }, () => ({ command: "SMALL" }) as never),
      });
      const stream = new StreamDriver(fx.client("t-small"));
      stream.send({ ...SUB(["SMALL"]), credits: 80 });
      expect((await stream.next())?.subscribed).toBeDefined();
      const batches: number[] = [];
      while (batches.reduce((a, b) => a + b, 0) < 80)
        batches.push((await stream.next())?.tasks?.tasks.length ?? 0);
      expect(Math.max(...batches)).toBeLessThanOrEqual(50);
      stream.close();
    } finally {
      await fx.close();
    }
  });
});
