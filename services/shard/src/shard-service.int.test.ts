import { ClientError, createChannel, Status } from "nice-grpc";
import { Task, TaskState } from "@codeq/proto";
import { RedisMapSource } from "@codeq/shardmap";
import { listReflectedServices } from "@codeq/testing";
import { eventually, shardFixture, StreamDriver, SUB, type ShardFixture } from "./test/fixture";

async function code(call: Promise<unknown>): Promise<Status | undefined> {
  return call.then(
    () => undefined,
    (e: unknown) => (e instanceof ClientError ? e.code : undefined),
  );
}

describe("the internal ShardService", () => {
  let fx: ShardFixture;
  // completed tasks are deleted at ack, so an emptied queue holds nothing
  beforeAll(async () => (fx = await shardFixture({ completedRetentionMs: 0 })));
  afterAll(() => fx.close());

  it("is served and reflected beside QueueService", async () => {
    const channel = createChannel(fx.address);
    const services = await listReflectedServices(channel).finally(() => channel.close());
    expect(services).toEqual(
      expect.arrayContaining(["codeq.v1.QueueService", "codeq.internal.v1.ShardService"]),
    );
  });

  it("GetShardStatus counts ready, scheduled, leased and dead tasks, and open streams", async () => {
    const shard = fx.shardClient();
    expect(await shard.getShardStatus({})).toEqual({
      shard: "a",
      storeReachable: true,
      mapVersion: 0,
      queueDepth: 0,
      openStreams: 0,
      lifecycle: "serving",
      commands: [],
      freshRead: false,
    });
    const c = fx.client("st", "producer,worker");
    await c.enqueueBatch({
      tasks: [
        { command: "DEPTH" },
        { command: "DEPTH" },
        { command: "DEPTH" },
        { command: "DEPTH" },
        { command: "LATER", delayMs: 60_000 },
      ] as never,
    });
    const leased = await c.lease({ commands: ["DEPTH"], maxTasks: 3 });
    const [done, dead] = leased.tasks.map((t) => t.leaseToken);
    await c.ack({ items: [{ leaseToken: done!, result: Buffer.alloc(0) }] });
    await c.nack({ items: [{ leaseToken: dead!, error: "bad", deadLetter: true }] });
    // ready 1, scheduled 1, leased 1, dead 1; the acked task is gone
    expect(await shard.getShardStatus({})).toMatchObject({
      queueDepth: 4,
      commands: ["DEPTH", "LATER"],
      freshRead: false,
    });
    // asked for a read of its own (not one already under way): it says it did one
    expect(await shard.getShardStatus({ fresh: true })).toMatchObject({
      queueDepth: 4,
      commands: ["DEPTH", "LATER"],
      freshRead: true,
    });
    // asked without the depth (a router checking a move's target): not read
    expect(await shard.getShardStatus({ withoutDepth: true })).toMatchObject({
      shard: "a",
      storeReachable: true,
      queueDepth: 0,
      lifecycle: "serving",
      commands: [],
    });

    const stream = new StreamDriver(fx.client("st"));
    stream.send({ ...SUB(["NOTHING"]), credits: 1 });
    await stream.next();
    expect((await shard.getShardStatus({})).openStreams).toBe(1);
    stream.close();
    await eventually(async () => (await shard.getShardStatus({})).openStreams === 0);
  });

  it("reads the depth once for callers that ask while a read runs, and afresh after", async () => {
    const c = fx.client("sf", "producer");
    await c.enqueue({ command: "ONCE" });
    const metrics = fx.worker.metrics;
    const first = metrics.depthByCommand();
    expect(metrics.depthByCommand()).toBe(first); // shared while it runs
    expect((await first).get("ONCE")?.ready).toBe(1);
    await c.enqueue({ command: "ONCE" });
    const next = metrics.depthByCommand();
    expect(next).not.toBe(first);
    expect((await next).get("ONCE")?.ready).toBe(2);
  });

  it("ListQueues pages through the tenants of a command that hold tasks, with counts", async () => {
    for (const tenant of ["t1", "t2", "t3", "t4", "t5"])
      await fx.client(tenant).enqueueBatch({
        tasks: [{ command: "LQ" }, { command: "LQ", delayMs: 60_000 }] as never,
      });
    await fx.client("t3").enqueue({ command: "LQ", priority: 9 });
    await fx.client("t1").enqueue({ command: "ELSEWHERE" });
    // t0 held a task once, but holds none now
    const emptied = fx.client("t0", "producer,worker");
    await emptied.enqueue({ command: "LQ" });
    const [task] = (await emptied.lease({ commands: ["LQ"], maxTasks: 1 })).tasks;
    await emptied.ack({ items: [{ leaseToken: task!.leaseToken, result: Buffer.alloc(0) }] });

    const shard = fx.shardClient();
    const pages: string[][] = [];
    let pageToken = "";
    do {
      const page = await shard.listQueues({ command: "LQ", pageSize: 2, pageToken });
      pages.push(page.queues.map((q) => q.tenant));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(pages.flat()).toEqual(["t1", "t2", "t3", "t4", "t5"]);
    expect(pages.every((p) => p.length <= 2)).toBe(true);

    const all = await shard.listQueues({ command: "LQ", pageSize: 0, pageToken: "" });
    expect(all.nextPageToken).toBe("");
    expect(all.queues.find((q) => q.tenant === "t3")?.counts).toMatchObject({
      ready: 2,
      scheduled: 1,
      leased: 0,
      dead: 0,
    });
    expect(all.queues.find((q) => q.tenant === "t3")?.counts?.readyByPriority[9]).toBe(1);
    expect(await shard.listQueues({ command: "NONE", pageSize: 10, pageToken: "" })).toEqual({
      queues: [],
      nextPageToken: "",
    });
  });

  it("ListQueues refuses a bad command, page size or page token with INVALID_ARGUMENT", async () => {
    const shard = fx.shardClient();
    const ask = (command: string, pageSize = 10, pageToken = "") =>
      code(shard.listQueues({ command, pageSize, pageToken }));
    expect(await ask("")).toBe(Status.INVALID_ARGUMENT);
    expect(await ask("no spaces")).toBe(Status.INVALID_ARGUMENT);
    expect(await ask("LQ", 10_001)).toBe(Status.INVALID_ARGUMENT);
    expect(await ask("LQ", 10, "not a token!")).toBe(Status.INVALID_ARGUMENT);
    expect(await ask("LQ", 10_000)).toBeUndefined();
  });

  it("HeldTasks is refused while the shard still takes imports, and for bad names or too many ids", async () => {
    const shard = fx.shardClient();
    const queue = { command: "HELD", tenant: "t1" };
    const { taskId } = await fx.client("t1").enqueue({ command: "HELD" });
    // a standalone worker takes imports for any migration: an answer could be overtaken
    // (the held answer itself, through a move's abort: migration.int.test.ts)
    const refused = await shard
      .heldTasks({ ...queue, migrationId: "m1", taskIds: [taskId] })
      .catch((e: unknown) => e as ClientError);
    expect(refused).toMatchObject({ code: Status.FAILED_PRECONDITION });
    expect((refused as ClientError).details).toMatch(/ask again once the abort reaches it/);
    const ask = (req: object) => code(shard.heldTasks({ migrationId: "m1", taskIds: [], ...req }));
    expect(await ask({ command: "no spaces", tenant: "t1" })).toBe(Status.INVALID_ARGUMENT);
    expect(await ask({ ...queue, taskIds: Array.from({ length: 1001 }, (_, i) => `id${i}`) })).toBe(
      Status.INVALID_ARGUMENT,
    );
  });

  it("ImportTasks stores moved tasks once, in their state, and wakes a waiting stream", async () => {
    const shard = fx.shardClient();
    const queue = { command: "IMP", tenant: "t1" };
    const stream = new StreamDriver(fx.client("t1"));
    stream.send({ ...SUB(["IMP"]), credits: 10 });
    expect((await stream.next())?.subscribed).toBeDefined();
    const moved = (id: string, state: TaskState) => ({
      task: {
        ...Task.fromPartial({ id, command: "IMP", tenant: "t1", payload: Buffer.from(id) }),
        state,
        maxAttempts: 5,
        attempts: 2,
        runAtMs: state === TaskState.TASK_STATE_SCHEDULED ? Date.now() + 600_000 : Date.now(),
      },
      idempotencyExpiresAtMs: 0,
      leaseSeq: 7,
      doneAtMs: 0,
    });
    const ids = ["01JD0000000000000000000001", "01JD0000000000000000000002"];
    const req = {
      ...queue,
      migrationId: "m1",
      tasks: [
        moved(ids[0]!, TaskState.TASK_STATE_READY),
        moved(ids[1]!, TaskState.TASK_STATE_SCHEDULED),
      ],
    };
    const first = await shard.importTasks(req);
    expect(first).toEqual({
      imported: ids,
      alreadyPresent: [],
      keysBound: 0,
      busy: first.busy,
      // it honours ready_at_head (a mover falls back to appending for a worker that does not say so)
      placesReadyAtHead: true,
    });
    // how busy the worker is, for the mover to yield to its live traffic
    expect(first.busy).toBeGreaterThanOrEqual(0);
    expect(first.busy).toBeLessThanOrEqual(1);
    // a repeat (a mover that crashed after the call) stores nothing twice
    expect(await shard.importTasks(req)).toMatchObject({
      imported: [],
      alreadyPresent: ids,
      keysBound: 0,
    });
    const s = await fx.worker.engine.stats(queue);
    expect([s.ready + s.leased, s.scheduled]).toEqual([1, 1]); // the stream may hold it already
    const pushed = (await stream.next())?.tasks?.tasks ?? [];
    expect(pushed.map((t) => t.task!.id)).toEqual([ids[0]]);
    expect(pushed[0]!.task!.attempts).toBe(3); // attempts kept (+1 for this delivery)
    stream.close();
    expect(
      await code(
        shard.importTasks({ ...req, tasks: [moved(ids[0]!, TaskState.TASK_STATE_LEASED)] }),
      ),
    ).toBe(Status.INVALID_ARGUMENT); // only READY, SCHEDULED and DEAD tasks move
    expect(await code(shard.importTasks({ ...req, tenant: "bad tenant" }))).toBe(
      Status.INVALID_ARGUMENT,
    );
  });

  it("InterruptLeaseStream releases what an open stream holds, uncounted; NOT_FOUND for another id", async () => {
    const c = fx.client("intr", "producer,worker");
    await c.enqueueBatch({
      tasks: [
        { command: "INTR", maxAttempts: 1 },
        { command: "INTR", maxAttempts: 1 },
      ] as never,
    });
    const s = new StreamDriver(c);
    s.send({ ...SUB(["INTR"]), credits: 2 });
    const subscribed = (await s.next())!.subscribed!;
    expect(await s.pushed(2)).toHaveLength(2);
    const stats = () => fx.worker.engine.stats({ command: "INTR", tenant: "intr" });
    const shard = fx.shardClient();
    expect(await shard.interruptLeaseStream({ streamId: subscribed.streamId })).toEqual({
      released: 2,
    });
    expect(await stats()).toMatchObject({ ready: 2, dead: 0, leased: 0 });
    // nothing more is pushed on it: credits it still had, and a task ready now, stay unused
    s.send({ credits: 5 });
    await c.enqueue({ command: "INTR" } as never);
    await new Promise((r) => setTimeout(r, 200));
    expect(s.pending).toBe(0);
    expect(await stats()).toMatchObject({ ready: 3, leased: 0 });
    expect(await shard.interruptLeaseStream({ streamId: subscribed.streamId })).toEqual({
      released: 0,
    });
    s.close();
    await eventually(
      async () =>
        (await code(shard.interruptLeaseStream({ streamId: subscribed.streamId }))) ===
        Status.NOT_FOUND,
    );
    expect(await code(shard.interruptLeaseStream({ streamId: "" }))).toBe(Status.NOT_FOUND);
  });

  it("GetShardStatus reports the shard map version a worker follows", async () => {
    const controlPrefix = `${fx.server.keyPrefix}-status-ctl`;
    const source = new RedisMapSource({ url: fx.server.url, prefix: controlPrefix });
    const draft = {
      shards: {
        a: { endpoint: "127.0.0.1:1", state: "active" as const },
        b: { endpoint: "127.0.0.1:2", state: "active" as const },
      },
      defaultShard: "a",
      commands: {},
      tenants: {},
      migrations: [],
    };
    await source.compareAndSet(0, draft, { actor: "test", action: "test", summary: "" });
    await source.compareAndSet(
      1,
      { ...draft, commands: { X: "b" } },
      {
        actor: "test",
        action: "test",
        summary: "",
      },
    );
    const mapped = await shardFixture({ controlUrl: fx.server.url, controlPrefix }, fx.server);
    try {
      expect(await mapped.shardClient().getShardStatus({})).toMatchObject({
        shard: "a",
        mapVersion: 2,
        storeReachable: true,
      });
    } finally {
      await mapped.close();
      await source.close();
    }
  });
});
