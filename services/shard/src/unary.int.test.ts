import { Status } from "nice-grpc";
import { BackoffKind, TaskState } from "@codeq/proto";
import { eventually, shardFixture, type ShardFixture } from "./test/fixture";

describe("unary QueueService RPCs on a shard worker", () => {
  let fx: ShardFixture;
  beforeAll(async () => (fx = await shardFixture({ rewakeMs: 3_600_000, dueIdleMs: 60_000 })));
  afterAll(() => fx.close());

  it("Enqueue, then Lease, Extend, Ack, GetTask and QueueStats see the same task", async () => {
    const c = fx.client("u1");
    const res = await c.enqueue({
      command: "JOB",
      payload: Buffer.from("p"),
      priority: 7,
      idempotencyKey: "k1",
      headers: { trace: "x" },
      backoff: { kind: BackoffKind.BACKOFF_KIND_FIXED, baseMs: 50, maxMs: 50, jitter: false },
    });
    expect(res).toMatchObject({ duplicate: false, state: TaskState.TASK_STATE_READY });
    expect(await c.enqueue({ command: "JOB", idempotencyKey: "k1" })).toEqual({
      taskId: res.taskId,
      duplicate: true,
      state: TaskState.TASK_STATE_READY,
    });
    const leased = await c.lease({ commands: ["JOB"], maxTasks: 10 });
    expect(leased.tasks).toHaveLength(1);
    const lt = leased.tasks[0]!;
    expect(lt.task).toMatchObject({
      id: res.taskId,
      priority: 7,
      attempts: 1,
      headers: { trace: "x" },
      state: TaskState.TASK_STATE_LEASED,
      shard: "a",
    });
    const ext = await c.extend({ items: [{ leaseToken: lt.leaseToken, leaseDurationMs: 90_000 }] });
    expect(ext.results[0]!.status!.code).toBe(Status.OK);
    expect((await c.queueStats({ command: "JOB" })).total).toMatchObject({ leased: 1, ready: 0 });
    expect(
      (await c.ack({ items: [{ leaseToken: lt.leaseToken, result: Buffer.from("r") }] })).results,
    ).toEqual([{ code: 0, message: "" }]);
    const got = await c.getTask({ command: "JOB", taskId: res.taskId });
    expect(got.task).toMatchObject({
      state: TaskState.TASK_STATE_COMPLETED,
      result: Buffer.from("r"),
    });
    const stats = await c.queueStats({ command: "JOB" });
    expect(stats).toMatchObject({ shards: [{ shard: "a" }], unavailableShards: [] });
    expect(stats.total).toMatchObject({ completed: 1, leased: 0 });
  });

  it("EnqueueBatch answers per item in order, across commands", async () => {
    const c = fx.client("u2");
    const res = await c.enqueueBatch({
      tasks: [
        { command: "A", idempotencyKey: "same" },
        { command: "B", delayMs: 60_000 },
        { command: "A", idempotencyKey: "same" },
      ] as never,
    });
    expect(res.results.map((r) => [r.status!.code, r.duplicate, r.state])).toEqual([
      [0, false, TaskState.TASK_STATE_READY],
      [0, false, TaskState.TASK_STATE_SCHEDULED],
      [0, true, TaskState.TASK_STATE_READY],
    ]);
    expect(res.results[2]!.taskId).toBe(res.results[0]!.taskId);
  });

  it("a long-poll Lease is woken by an enqueue, not by its timeout", async () => {
    const c = fx.client("u3");
    const started = Date.now();
    const poll = c.lease({ commands: ["WAIT"], maxTasks: 5, waitMs: 30_000 });
    await new Promise((r) => setTimeout(r, 100));
    const { taskId } = await c.enqueue({ command: "WAIT" });
    const res = await poll;
    expect(res.tasks.map((t) => t.task?.id)).toEqual([taskId]);
    expect(Date.now() - started).toBeLessThan(29_000);
  }, 10_000);

  it("a long poll on several commands takes the task it was woken for, not another waiter's", async () => {
    const c = fx.client("u-multi");
    const parked = fx.worker.notifier.parked;
    const parks = (n: number) => eventually(async () => fx.worker.notifier.parked === parked + n);
    // parked in this order: an enqueue on MA wakes `both` (the oldest waiter of MA, with
    // room for one task), one on MB then wakes `onlyB`; if `both` started its next
    // round at MB (its rotation may say so) it would take MB's task, and `onlyB`,
    // finding MB empty, would park again with MA's task left to `onlyA`, never woken
    const both = c.lease({ commands: ["MA", "MB"], maxTasks: 1, waitMs: 5_000 });
    await parks(1);
    const onlyB = c.lease({ commands: ["MB"], maxTasks: 1, waitMs: 5_000 });
    await parks(2);
    const stopA = new AbortController();
    const onlyA = c
      .lease({ commands: ["MA"], maxTasks: 1, waitMs: 5_000 }, { signal: stopA.signal })
      .catch(() => undefined);
    await parks(3);

    const { results } = await c.enqueueBatch({
      tasks: [{ command: "MA" }, { command: "MB" }] as never,
    });
    const [a, b] = results.map((r) => r.taskId);
    const [gotBoth, gotB] = await Promise.all([both, onlyB]);
    expect(gotBoth.tasks.map((t) => t.task!.id)).toEqual([a]);
    // answered with its task, not empty at the end of its wait
    expect(gotB.tasks.map((t) => t.task!.id)).toEqual([b]);
    stopA.abort();
    await onlyA;
  }, 15_000);

  it("a long poll whose caller left leases nothing more when it wakes", async () => {
    const c = fx.client("u-left");
    // the earlier tests' polls have all left the notifier (an aborted one leaves it a
    // moment after its caller sees the abort)
    await eventually(async () => fx.worker.notifier.parked === 0);
    const parked = 0;
    const giveBacks = async () => {
      const body = await (await fetch(`http://127.0.0.1:${fx.worker.metricsPort}/metrics`)).text();
      const m =
        /codeq_shard_operation_duration_seconds_count\{shard="a",operation="give_back"\} (\d+)/.exec(
          body,
        );
      return Number(m?.[1] ?? 0);
    };
    const stop = new AbortController();
    const poll = c
      .lease({ commands: ["LEFT"], maxTasks: 5, waitMs: 10_000 }, { signal: stop.signal })
      .catch(() => undefined);
    await eventually(async () => fx.worker.notifier.parked === parked + 1);
    // a task stored behind the notifier's back: nothing wakes the poll but the abort
    await fx.worker.engine.enqueue({ command: "LEFT", tenant: "u-left" }, [{}]);
    const before = await giveBacks();
    stop.abort();
    await poll;
    await eventually(async () => fx.worker.notifier.parked === parked);
    // it was not leased for a caller that had gone, to be given back
    expect(await giveBacks()).toBe(before);
    const got = await c.lease({ commands: ["LEFT"], maxTasks: 5 });
    expect(got.tasks.map((t) => t.task!.attempts)).toEqual([1]);
  });

  it("a poller of several commands is served each of them, not only the first while it has a backlog", async () => {
    const c = fx.client("u-turns");
    await c.enqueueBatch({
      tasks: ["RA", "RA", "RA", "RB", "RB", "RB"].map((command) => ({ command })) as never,
    });
    const served: string[] = [];
    for (let i = 0; i < 4; i++) {
      const { tasks } = await c.lease({ commands: ["RA", "RB"], maxTasks: 1 });
      served.push(...tasks.map((t) => t.task!.command));
    }
    expect(served.filter((cmd) => cmd === "RA")).toHaveLength(2);
    expect(served.filter((cmd) => cmd === "RB")).toHaveLength(2);
  });

  it("RedriveDead and PurgeDead act on every task id named, whatever max_tasks says", async () => {
    const c = fx.client("u-named");
    const admin = fx.client("u-named", "producer,worker,admin");
    const dead = async (n: number) => {
      const { results } = await c.enqueueBatch({
        tasks: Array.from({ length: n }, () => ({ command: "NAMED" })) as never,
      });
      const { tasks } = await c.lease({ commands: ["NAMED"], maxTasks: n });
      await c.nack({ items: tasks.map((t) => ({ leaseToken: t.leaseToken, deadLetter: true })) });
      return results.map((r) => r.taskId);
    };
    const toPurge = await dead(3);
    expect(
      await admin.purgeDead({ command: "NAMED", taskIds: toPurge, maxTasks: 1 }),
    ).toMatchObject({ purged: 3, notFound: [] });
    const toRedrive = await dead(3);
    expect(
      await admin.redriveDead({ command: "NAMED", taskIds: toRedrive, maxTasks: 1 }),
    ).toMatchObject({ redriven: 3, notFound: [] });
  });

  it("a delayed task stored while the due loop reads the next due time is promoted when due", async () => {
    const c = fx.client("u-due");
    const engine = fx.worker.engine;
    const nextDueAt = engine.nextDueAt.bind(engine);
    // the due loop's next read: the task is stored while it is on its way, and the
    // read answers as it was sent (before it); the loop then sleeps its idle minute
    let stored: Promise<unknown> | undefined;
    engine.nextDueAt = async () => {
      const next = await nextDueAt();
      engine.nextDueAt = nextDueAt;
      stored = c.enqueue({ command: "DUE_RACE", delayMs: 300 });
      await stored;
      return next;
    };
    // a task due in an hour has the loop read the next due time now
    await c.enqueue({ command: "DUE_LATER", delayMs: 3_600_000 });
    await eventually(async () => stored !== undefined);
    const started = Date.now();
    const got = await c.lease({ commands: ["DUE_RACE"], maxTasks: 1, waitMs: 5_000 });
    expect(got.tasks).toHaveLength(1);
    // promoted at its run-at, not when the long poll gave up and leased once more
    expect(Date.now() - started).toBeLessThan(2_500);
  });

  it("a Lease with no wait answers at once, empty", async () => {
    expect(await fx.client("u4").lease({ commands: ["NONE"], maxTasks: 5 })).toEqual({ tasks: [] });
  });

  it("Nack reschedules or dead-letters; the DLQ can be listed, redriven and purged by an admin", async () => {
    const c = fx.client("u5");
    const admin = fx.client("u5", "producer,worker,admin");
    await c.enqueueBatch({ tasks: [{ command: "D", maxAttempts: 1 }, { command: "D" }] as never });
    const [a, b] = (await c.lease({ commands: ["D"], maxTasks: 2 })).tasks;
    const nacks = {
      items: [
        { leaseToken: a!.leaseToken, error: "boom", deadLetter: false },
        { leaseToken: b!.leaseToken, error: "poison", deadLetter: true },
      ],
    };
    const nacked = await c.nack(nacks);
    expect(nacked.results.map((r) => r.code)).toEqual([0, 0]);
    // sent again after a lost answer: OK, and nothing changes (the DLQ below holds two)
    expect((await c.nack(nacks)).results.map((r) => r.code)).toEqual([0, 0]);
    await expect(c.listDead({ command: "D" })).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
    });
    const dead = await admin.listDead({ command: "D", pageSize: 10 });
    expect(dead.tasks.map((t) => t.lastError)).toEqual(["boom", "poison"]);
    expect(await admin.redriveDead({ command: "D", taskIds: [a!.task!.id] })).toEqual({
      redriven: 1,
      remaining: 1,
      notFound: [],
    });
    expect(await admin.purgeDead({ command: "D" })).toEqual({
      purged: 1,
      remaining: 0,
      notFound: [],
    });
    expect((await c.lease({ commands: ["D"], maxTasks: 5 })).tasks.map((t) => t.task?.id)).toEqual([
      a!.task!.id,
    ]);
  });

  it("tenants never see each other's tasks", async () => {
    const alice = fx.client("alice");
    const bob = fx.client("bob");
    const { taskId } = await alice.enqueue({ command: "SECRET", idempotencyKey: "k" });
    await expect(bob.getTask({ command: "SECRET", taskId })).rejects.toMatchObject({
      code: Status.NOT_FOUND,
    });
    expect((await bob.lease({ commands: ["SECRET"], maxTasks: 10 })).tasks).toEqual([]);
    expect((await bob.queueStats({ command: "SECRET" })).total?.ready).toBe(0);
    expect((await bob.enqueue({ command: "SECRET", idempotencyKey: "k" })).duplicate).toBe(false);
    const [lt] = (await alice.lease({ commands: ["SECRET"], maxTasks: 1 })).tasks;
    expect(
      (await bob.ack({ items: [{ leaseToken: lt!.leaseToken, result: Buffer.alloc(0) }] }))
        .results[0]!.code,
    ).toBe(Status.NOT_FOUND);
    expect(
      (await bob.extend({ items: [{ leaseToken: lt!.leaseToken, leaseDurationMs: 0 }] }))
        .results[0]!.status!.code,
    ).toBe(Status.NOT_FOUND);
  });

  it("a cross-tenant worker leases every tenant of a command", async () => {
    await fx.client("x1").enqueue({ command: "FAN" });
    await fx.client("x2").enqueue({ command: "FAN" });
    const worker = fx.client("ops", "worker,cross-tenant-worker");
    const res = await worker.lease({ commands: ["FAN"], maxTasks: 10, allTenants: true });
    expect(res.tasks.map((t) => t.task?.tenant).sort()).toEqual(["x1", "x2"]);
    const acked = await worker.ack({
      items: res.tasks.map((t) => ({ leaseToken: t.leaseToken, result: Buffer.alloc(0) })),
    });
    expect(acked.results.every((r) => r.code === 0)).toBe(true);
  });

  it("a bad item of a batch over several commands is named by its index in the batch", async () => {
    const c = fx.client("u10");
    const bad = c.enqueueBatch({
      tasks: [
        { command: "IDX_A" },
        { command: "IDX_B" },
        { command: "IDX_A", priority: 42 },
      ] as never,
    });
    await expect(bad).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^tasks\[2\]: priority/),
    });
    await expect(
      c.enqueueBatch({ tasks: [{ command: "IDX_A" }, { command: "IDX:B" }] as never }),
    ).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^tasks\[1\]: command must match/),
    });
    expect((await c.queueStats({ command: "IDX_A" })).total?.ready).toBe(0);
  });

  it("EnqueueStream answers every batch by seq, and a bad batch does not end the stream", async () => {
    const c = fx.client("u6");
    async function* batches() {
      yield { seq: 1, tasks: [{ command: "S" }, { command: "S" }] as never };
      yield { seq: 2, tasks: [{ command: "S", priority: 42 }] as never };
      yield { seq: 3, tasks: [{ command: "S" }] as never };
    }
    const answers = new Map<number, number[]>();
    for await (const res of c.enqueueStream(batches()))
      answers.set(
        res.seq,
        res.results.map((r) => r.status!.code),
      );
    expect(answers).toEqual(
      new Map([
        [1, [0, 0]],
        [2, [Status.INVALID_ARGUMENT]],
        [3, [0]],
      ]),
    );
    expect((await c.queueStats({ command: "S" })).total?.ready).toBe(3);
  });

  it("a Lease over several commands that fails part way gives back what it leased", async () => {
    const c = fx.client("u9");
    for (const command of ["PART_A", "PART_B"])
      await c.enqueueBatch({ tasks: [{ command }, { command }] as never });
    // a store failure on the second command's keys only: its in-flight index is not a sorted set
    const store = fx.server.client();
    const [state] = await store.keys("*{PART_B:u9:*:state");
    const leased = state!.replace(/:state$/, ":leased");
    await store.set(leased, "not a sorted set");
    try {
      await expect(c.lease({ commands: ["PART_A", "PART_B"], maxTasks: 10 })).rejects.toBeDefined();
      // the first command's tasks went to nobody: ready again, not leased until they expire
      expect((await c.queueStats({ command: "PART_A" })).total).toMatchObject({
        ready: 2,
        leased: 0,
      });
    } finally {
      await store.del(leased); // the other tests read every queue's stats
      store.disconnect();
    }
  });

  it("serves every other metric when a queue's depth cannot be read", async () => {
    await fx.client("m2").enqueue({ command: "DEPTH_BAD" });
    const store = fx.server.client();
    const [state] = await store.keys("*{DEPTH_BAD:m2:*:state");
    const leased = state!.replace(/:state$/, ":leased");
    await store.set(leased, "not a sorted set"); // its stats read fails
    try {
      const res = await fetch(`http://127.0.0.1:${fx.worker.metricsPort}/metrics`);
      expect(res.status).toBe(200);
      const body = await res.text();
      expect(body).toMatch(/codeq_shard_available\{shard="a"\} 1/);
      expect(body).toMatch(/codeq_queue_depth_read_errors_total\{shard="a"\} 1/);
      expect(body).not.toMatch(/codeq_queue_depth\{/);
    } finally {
      await store.del(leased);
      store.disconnect();
    }
  });

  it("serves Prometheus metrics", async () => {
    await fx.client("m1").enqueue({ command: "METRIC" });
    const res = await fetch(`http://127.0.0.1:${fx.worker.metricsPort}/metrics`);
    const body = await res.text();
    expect(body).toMatch(/codeq_queue_depth\{command="METRIC",shard="a",type="ready"\} 1/);
    expect(body).toMatch(
      /codeq_shard_operation_duration_seconds_count\{shard="a",operation="enqueue"\} \d+/,
    );
    expect(body).toMatch(/codeq_shard_available\{shard="a"\} 1/);
    expect(body).toMatch(/codeq_rpc_requests_total\{method="Enqueue",code="OK"\} \d+/);
  });
});
