import { setTimeout as sleep } from "node:timers/promises";
import { ClientError, ServerError, Status } from "nice-grpc";
import { MigrationState, ShardState, TaskState, type LeasedTask } from "@codeq/proto";
import { Redis } from "ioredis";
import { shardMapKey } from "@codeq/shardmap";
import { RedisServer, startRelay } from "@codeq/testing";
import { AdminStore } from "./admin-store";
import { routerCluster, within, type RouterCluster } from "./test/cluster";
import { olderPeer } from "./test/older-peer";

const payload = (s: string) => Buffer.from(s);

let server: RedisServer;
let rc: RouterCluster;

beforeAll(async () => {
  server = await RedisServer.start();
});
afterAll(async () => {
  await server.stop();
});
beforeEach(async () => {
  rc = await routerCluster({ server, shards: ["a", "b", "c"] });
});
afterEach(async () => {
  await rc.close();
});

/** Enqueues `n` tasks of `command` for tenant t1 through the router, payloads "0" … "n-1". */
const enqueueNumbered = (command: string, n: number) =>
  rc.client("t1").enqueueBatch({
    tasks: Array.from({ length: n }, (_, i) => ({ command, payload: payload(`${i}`) })),
  });

/** The payloads of leased tasks as text, in the order they came. */
const payloadsOf = (res: { tasks: LeasedTask[] }) =>
  res.tasks.map((t) => Buffer.from(t.task!.payload).toString());

/**
 * Puts a stand-in for an older build of b's worker (`olderPeer`) at b's address in the
 * map, and waits for a to see it: a's mover then reaches b through it.
 */
async function olderB(options: Parameters<typeof olderPeer>[1] = {}) {
  const older = await olderPeer(rc.addresses.get("b")!, options);
  await rc.change((d) => ({
    ...d,
    shards: { ...d.shards, b: { ...d.shards.b!, endpoint: older.address } },
  }));
  await within(
    5_000,
    async () => rc.workers.get("a")!.map!.current().shards.b?.endpoint === older.address,
  );
  return older;
}

/** Replaces the file's three-shard cluster with shards a and b, set up by `options`. */
async function twoShards(
  options: Omit<Parameters<typeof routerCluster>[0], "server" | "shards"> = {},
): Promise<void> {
  await rc.close();
  rc = await routerCluster({ server, shards: ["a", "b"], ...options });
}

const stats = (shard: string, command: string, tenant = "t1") =>
  rc.workers.get(shard)!.engine.stats({ command, tenant });

/** Shard `shard` fails every import of the queues `refused` picks (its store refuses them, say). */
function refuseImports(
  shard: string,
  refused: (q: { command: string; tenant: string }) => boolean,
) {
  const engine = rc.workers.get(shard)!.engine;
  const original = engine.importTasks.bind(engine);
  engine.importTasks = async (q, tasks, ...rest) => {
    if (refused(q) && tasks.length > 0) throw new Error("refused by the test");
    return original(q, tasks, ...rest);
  };
}

/** Keeps the event loop busy for `ms`. */
function spin(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy
  }
}

async function code(p: Promise<unknown>): Promise<Status> {
  return p.then(
    () => Status.OK,
    (e: unknown) => (e instanceof ClientError ? e.code : Status.UNKNOWN),
  );
}

describe("AssignCommand moves a command between shards while it is used", () => {
  test("ready, scheduled and dead tasks and idempotency keys move; leased ones move once settled", async () => {
    const c = rc.client("t1");
    await c.enqueueBatch({
      tasks: Array.from({ length: 40 }, (_, i) => ({ command: "X", payload: payload(`r${i}`) })),
    });
    await c.enqueue({ command: "X", payload: payload("later"), delayMs: 600_000 });
    const keyed = await c.enqueue({ command: "X", payload: payload("k"), idempotencyKey: "key-1" });
    const held = await c.lease({ commands: ["X"], maxTasks: 3 });
    await c.nack({ items: [{ leaseToken: held.tasks[0]!.leaseToken, deadLetter: true }] });
    const leased = held.tasks.slice(1);

    const admin = rc.admin();
    const dry = await admin.assignCommand({ command: "X", shard: "b", dryRun: true });
    expect(dry.migrations).toEqual([]);
    expect(dry.plan[0]).toMatchObject({ fromShard: "a", toShard: "b", tenants: ["t1"] });
    expect(dry.plan[0]!.counts).toMatchObject({ ready: 38, scheduled: 1, dead: 1, leased: 2 });
    expect(rc.router.routing.currentShard("X", "t1")).toBe("a"); // a dry run changes nothing

    const res = await admin.assignCommand({ command: "X", shard: "b" });
    const id = res.migrations[0]!.id;
    expect(res.migrations[0]!.state).toBe(MigrationState.MIGRATION_STATE_COPYING);
    // new enqueues go to b at once
    await within(2_000, () => rc.router.routing.currentShard("X", "t1") === "b");
    await c.enqueue({ command: "X", payload: payload("new") });
    // everything movable moves; the two leased tasks keep the migration draining
    await within(10_000, async () => {
      const m = (await admin.getMigration({ id })).migration!;
      return m.state === MigrationState.MIGRATION_STATE_DRAINING;
    });
    const b = await stats("b", "X");
    expect(b).toMatchObject({ ready: 39, scheduled: 1, dead: 1 }); // 38 moved + 1 new
    expect((await stats("a", "X")).leased).toBe(2);
    // the idempotency key came along: a repeat is a duplicate of the same task
    const again = await c.enqueue({ command: "X", payload: payload("k"), idempotencyKey: "key-1" });
    expect(again).toMatchObject({ duplicate: true, taskId: keyed.taskId });
    // settling the leased tasks (on a, by their tokens) lets the migration finish: one
    // acked, one nacked to run again (ready on a, it moves too)
    const acked = await c.ack({ items: [{ leaseToken: leased[0]!.leaseToken }] });
    expect(acked.results.map((r) => r.code)).toEqual([0]);
    const nacked = await c.nack({ items: [{ leaseToken: leased[1]!.leaseToken, delayMs: 0 }] });
    expect(nacked.results.map((r) => r.code)).toEqual([0]);
    await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
    const done = (await admin.getMigration({ id })).migration!;
    expect(done.state).toBe(MigrationState.MIGRATION_STATE_COMPLETED);
    expect(done.moved).toMatchObject({ ready: 39, scheduled: 1, dead: 1, idempotencyKeys: 1 });
    expect(done.finishedAtMs).toBeGreaterThan(0);
    // a completed move is not aborted: the queue is assigned back instead
    expect(await code(admin.abortMigration({ id }))).toBe(Status.FAILED_PRECONDITION);
    const listed = await admin.listMigrations({ includeFinished: true });
    expect(listed.migrations.map((m) => m.id)).toContain(id);
    const audit = await admin.listAuditEvents({});
    expect(audit.events.map((e) => e.action)).toEqual(
      expect.arrayContaining(["AssignCommand", "MigrationDraining", "MigrationCompleted"]),
    );
    // FIFO within the priority held: the moved tasks in their order, ahead of the one
    // enqueued on b before they landed; the retry, ready again once the rest had moved,
    // behind them all
    const order = await c.lease({ commands: ["X"], maxTasks: 100 });
    expect(payloadsOf(order)).toEqual([
      ...Array.from({ length: 37 }, (_, i) => `r${i + 3}`),
      "k",
      "new",
      "r2",
    ]);
  }, 30_000);

  test("a task the source admitted before the move but stored after the mover last looked (its script lost: NOSCRIPT) moves too", async () => {
    // shard a's store through a relay that can hold its replies back
    const relay = await startRelay(server.host, server.port);
    try {
      await twoShards({ perShard: { a: { redisUrl: `redis://127.0.0.1:${relay.port}` } } });
      const c = rc.client("t1");
      // the enqueue script has gone over a's connection: the next goes by its hash
      await c.enqueue({ command: "FIRST" });
      const flush = new Redis(server.url);
      await flush.script("FLUSH").finally(() => flush.quit());
      const held = relay.holdReplies((reply) => reply.includes("NOSCRIPT"));
      const late = c.enqueue({ command: "X", payload: payload("late") });
      await within(5_000, async () => held.holding);
      // X moves a → b while a's answer is late; a's mover lists X's queues a second after
      // the switch, and that answer comes behind the held one
      await rc.change((m) => ({
        ...m,
        commands: { ...m.commands, X: "b" },
        migrations: [
          { id: "m1", command: "X", from: "a", to: "b", state: "copying", startedAtMs: Date.now() },
        ],
      }));
      await sleep(1_800);
      held.release();
      expect((await late).state).toBe(TaskState.TASK_STATE_READY);
      await within(15_000, async () => (await rc.source.get())!.migrations.length === 0);
      expect((await stats("a", "X")).ready).toBe(0);
      expect((await stats("b", "X")).ready).toBe(1);
      expect(payloadsOf(await c.lease({ commands: ["X"], maxTasks: 10 }))).toEqual(["late"]);
    } finally {
      await rc.close();
      await relay.close();
      rc = await routerCluster({ server, shards: ["a", "b", "c"] });
    }
  }, 30_000);

  test("idempotency keys of tasks already done still deduplicate after the move", async () => {
    const c = rc.client("t1");
    const first = await c.enqueue({
      command: "K",
      payload: payload("once"),
      idempotencyKey: "k-1",
    });
    const got = await c.lease({ commands: ["K"], maxTasks: 1 });
    await c.ack({ items: [{ leaseToken: got.tasks[0]!.leaseToken }] });
    const { migrations } = await rc.admin().assignCommand({ command: "K", shard: "c" });
    await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
    const again = await c.enqueue({
      command: "K",
      payload: payload("once"),
      idempotencyKey: "k-1",
    });
    expect(again).toMatchObject({ duplicate: true, taskId: first.taskId });
    expect((await stats("c", "K")).ready).toBe(0);
    const done = (await rc.admin().getMigration({ id: migrations[0]!.id })).migration!;
    expect(done.moved!.idempotencyKeys).toBe(1);
    // c holds the key and no task; moved on to b, the key goes along
    await rc.admin().assignCommand({ command: "K", shard: "b" });
    await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
    expect(
      await c.enqueue({ command: "K", payload: payload("once"), idempotencyKey: "k-1" }),
    ).toMatchObject({ duplicate: true, taskId: first.taskId });
    expect((await stats("b", "K")).ready).toBe(0);
  }, 30_000);

  test("a producer's retry with its idempotency key during a move gets the original task, leased, done or not moved yet", async () => {
    const c = rc.client("t1");
    const once = (key: string) =>
      c.enqueue({ command: "X", payload: payload(key), idempotencyKey: key });
    const held = await once("k-held");
    const leased = await c.lease({ commands: ["X"], maxTasks: 1 }); // keeps the move going
    const done = await once("k-done");
    const got = await c.lease({ commands: ["X"], maxTasks: 1 });
    await c.ack({ items: [{ leaseToken: got.tasks[0]!.leaseToken }] });
    const waiting = await once("k-ready");
    await rc.admin().assignCommand({ command: "X", shard: "b" });
    await within(2_000, () => rc.router.routing.currentShard("X", "t1") === "b");
    // the retries reach b, which has not seen the keys (nothing has moved yet)
    for (const [key, first] of [
      ["k-held", held],
      ["k-done", done],
      ["k-ready", waiting],
    ] as const)
      expect(await once(key)).toMatchObject({ duplicate: true, taskId: first.taskId });
    await c.ack({ items: [{ leaseToken: leased.tasks[0]!.leaseToken }] });
    await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
    // one task each, as enqueued before the move
    expect(await stats("b", "X")).toMatchObject({ ready: 1, leased: 0 });
    expect(await once("k-ready")).toMatchObject({ duplicate: true, taskId: waiting.taskId });
  }, 30_000);

  test("a keyed enqueue during a move is stored, counted as unchecked, while the source cannot be asked about its key", async () => {
    const c = rc.client("t1");
    await c.enqueue({ command: "X", payload: payload("k"), idempotencyKey: "k-1" });
    await c.lease({ commands: ["X"], maxTasks: 1 }); // keeps the move going
    await rc.admin().assignCommand({ command: "X", shard: "b" });
    await within(2_000, () => rc.router.routing.currentShard("X", "t1") === "b");
    await rc.stopShard("a");
    // a's outage does not stop b's producers: the retry cannot be checked, so it is
    // stored (a duplicate, here), and counted
    const again = await c.enqueue({ command: "X", payload: payload("k"), idempotencyKey: "k-1" });
    expect(again.duplicate).toBe(false);
    const unchecked = await rc.workers.get("b")!.metrics.keysUnchecked.get();
    expect(unchecked.values[0]?.value).toBe(1);
    // an enqueue without a key has nothing to ask
    expect(await code(c.enqueue({ command: "X", payload: payload("plain") }))).toBe(Status.OK);
    expect((await stats("b", "X")).ready).toBe(2);
    await rc.startShard("a");
  }, 30_000);

  test("a move whose source cannot be counted says so in its plan, and goes ahead", async () => {
    const c = rc.client("t1");
    await c.enqueue({ command: "X", payload: payload("on a") });
    await rc.stopShard("a");
    const res = await rc.admin().assignCommand({ command: "X", shard: "b" });
    expect(res.plan[0]).toMatchObject({
      fromShard: "a",
      toShard: "b",
      tenants: [],
      notCounted: expect.stringMatching(/^cannot count what shard a holds: /),
    });
    expect(res.migrations).toHaveLength(1);
    await rc.startShard("a");
    await within(15_000, async () => (await rc.source.get())!.migrations.length === 0);
    expect((await stats("b", "X")).ready).toBe(1);
  }, 30_000);

  test("a keyed enqueue whose key lookup outlasts the move's abort is not stored where no router reads", async () => {
    const c = rc.client("t1");
    // b asks a about every key during the move; a's answer is held back
    const a = rc.workers.get("a")!.engine;
    const lookup = a.lookupIdempotencyKeys.bind(a);
    let asked: (() => void) | undefined;
    let answer: (() => void) | undefined;
    a.lookupIdempotencyKeys = async (q, keys) => {
      const held = new Promise<void>((resolve) => (answer = resolve));
      asked?.();
      await held;
      return lookup(q, keys);
    };
    const { migrations } = await rc.admin().assignCommand({ command: "X", shard: "b" });
    await within(2_000, () => rc.router.routing.currentShard("X", "t1") === "b");
    const wasAsked = new Promise<void>((resolve) => (asked = resolve));
    const sent = c.enqueueBatch({ tasks: [{ command: "X", idempotencyKey: "k-late" }] });
    await wasAsked;
    // the move is aborted and ends (nothing had moved) while b waits for a's answer
    await rc.admin().abortMigration({ id: migrations[0]!.id });
    await within(1_000, async () => (await rc.source.get())!.migrations.length === 0);
    await within(1_000, () => rc.workers.get("b")!.map!.current().migrations.length === 0);
    answer!();
    const res = await sent;
    // b refused the call as fencing refuses it (the version and the owner), storing
    // nothing, where no router reads X; the router refreshed its map and sent it to a
    expect(res.results[0]!.status!.code).toBe(Status.OK);
    expect(await stats("b", "X")).toMatchObject({ ready: 0 });
    expect(await stats("a", "X")).toMatchObject({ ready: 1 });
    // the producer's retry is a duplicate of it
    const again = await c.enqueueBatch({ tasks: [{ command: "X", idempotencyKey: "k-late" }] });
    expect(again.results[0]).toMatchObject({ taskId: res.results[0]!.taskId, duplicate: true });
    expect(await stats("a", "X")).toMatchObject({ ready: 1 });
  }, 30_000);

  test("an enqueue of two commands whose key lookup outlasts the other command's move stores neither where no router reads", async () => {
    const c = rc.client("t1");
    await rc.admin().assignCommand({ command: "Y", shard: "b" });
    await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
    // b asks a about X's keys during X's move; a's first answer is held back
    const a = rc.workers.get("a")!.engine;
    const lookup = a.lookupIdempotencyKeys.bind(a);
    let asked: (() => void) | undefined;
    let answer: (() => void) | undefined;
    a.lookupIdempotencyKeys = async (q, keys) => {
      a.lookupIdempotencyKeys = lookup;
      const held = new Promise<void>((resolve) => (answer = resolve));
      asked?.();
      await held;
      return lookup(q, keys);
    };
    await rc.admin().assignCommand({ command: "X", shard: "b" });
    await within(2_000, () => rc.router.routing.currentShard("X", "t1") === "b");
    const wasAsked = new Promise<void>((resolve) => (asked = resolve));
    // one call to b: X keyed (b asks a), Y without a key
    const sent = c.enqueueBatch({
      tasks: [{ command: "X", idempotencyKey: "k-two" }, { command: "Y" }],
    });
    await wasAsked;
    // meanwhile Y moves from b to c, and its move ends (b held nothing of it)
    await rc.admin().assignCommand({ command: "Y", shard: "c" });
    await within(10_000, async () =>
      (await rc.source.get())!.migrations.every((m) => m.command !== "Y"),
    );
    await within(1_000, () =>
      rc.workers
        .get("b")!
        .map!.current()
        .migrations.every((m) => m.command !== "Y"),
    );
    answer!();
    const res = await sent;
    expect(res.results.map((r) => r.status!.code)).toEqual([Status.OK, Status.OK]);
    // Y's task is on c, where routers read it, not on b
    expect(await stats("b", "Y")).toMatchObject({ ready: 0 });
    expect(await stats("c", "Y")).toMatchObject({ ready: 1 });
  }, 30_000);

  test("a task completed before its queue moved can still be read, with its result, once the move is over", async () => {
    const c = rc.client("t1");
    const { taskId } = await c.enqueue({ command: "X", payload: payload("job") });
    const got = await c.lease({ commands: ["X"], maxTasks: 1 });
    await c.ack({ items: [{ leaseToken: got.tasks[0]!.leaseToken, result: payload("answer") }] });
    await rc.admin().assignCommand({ command: "X", shard: "b" });
    await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
    expect((await stats("a", "X")).completed).toBe(1); // kept on a until retention
    const { task } = await c.getTask({ command: "X", taskId });
    expect(task).toMatchObject({ id: taskId, state: TaskState.TASK_STATE_COMPLETED });
    expect(Buffer.from(task!.result).toString()).toBe("answer");
    // an id no shard holds is still NOT_FOUND, asked of the shards the queue was on
    // (b, then a, which its finished move names), not of c, which it never was on
    const calls = async (shard: string) => {
      const metric = await rc.workers
        .get(shard)!
        .metrics.registry.getSingleMetric("codeq_rpc_requests_total")!
        .get();
      return metric.values
        .filter((v) => v.labels.method === "GetTask")
        .reduce((sum, v) => sum + v.value, 0);
    };
    const before = { a: await calls("a"), c: await calls("c") };
    expect(await code(c.getTask({ command: "X", taskId: "01JB0000000000000000000000" }))).toBe(
      Status.NOT_FOUND,
    );
    expect(await calls("a")).toBe(before.a + 1);
    expect(await calls("c")).toBe(before.c);
    // with a down, the task may be there: unavailable, naming a, not "no such task"
    await rc.stopShard("a");
    const err = await c.getTask({ command: "X", taskId }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: Status.UNAVAILABLE });
    expect((err as ClientError).details).toMatch(/a did not answer/);
    await rc.startShard("a");
  }, 30_000);

  test("a tenant's queue moves on its own; other tenants stay", async () => {
    await rc.client("t1").enqueue({ command: "X", payload: payload("1") });
    await rc.client("t2").enqueue({ command: "X", payload: payload("2") });
    await rc.admin().assignCommand({ command: "X", tenant: "t2", shard: "c" });
    await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
    expect((await stats("c", "X", "t2")).ready).toBe(1);
    expect((await stats("a", "X", "t2")).ready).toBe(0);
    expect((await stats("a", "X", "t1")).ready).toBe(1);
    expect(rc.router.routing.currentShard("X", "t2")).toBe("c");
    expect(rc.router.routing.currentShard("X", "t1")).toBe("a");
  }, 30_000);

  test("a queue assigned back where it would go anyway keeps no entry of its own", async () => {
    await rc.client("t2").enqueue({ command: "X", payload: payload("2") });
    const admin = rc.admin();
    const moved = async (command: string, shard: string, tenant = "") => {
      await admin.assignCommand({ command, tenant, shard });
      await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
      return (await rc.source.get())!;
    };
    expect((await moved("X", "c", "t2")).tenants).toEqual({ "X/t2": "c" });
    // back to its command's shard: no override left to pin it
    expect((await moved("X", "a", "t2")).tenants).toEqual({});
    // so a move of the whole command takes t2's queue along
    expect((await moved("X", "b")).commands).toEqual({ X: "b" });
    expect((await stats("b", "X", "t2")).ready).toBe(1);
    // and back to the default shard: no mapping left
    expect((await moved("X", "a")).commands).toEqual({});
    expect((await stats("a", "X", "t2")).ready).toBe(1);
    // an override a command's move made redundant goes when the queue is assigned
    // where it is already (no move)
    expect((await moved("X", "c", "t2")).tenants).toEqual({ "X/t2": "c" });
    expect((await moved("X", "c")).tenants).toEqual({ "X/t2": "c" });
    const { migrations } = await admin.assignCommand({ command: "X", tenant: "t2", shard: "c" });
    expect(migrations).toEqual([]);
    expect((await rc.source.get())!.tenants).toEqual({});
  }, 60_000);

  test("AbortMigration routes back and brings moved tasks home", async () => {
    const c = rc.client("t1");
    // a leased task keeps the migration from completing before the abort
    await enqueueNumbered("Y", 30);
    const hold = await c.lease({ commands: ["Y"], maxTasks: 1 });
    const admin = rc.admin();
    const { migrations } = await admin.assignCommand({ command: "Y", shard: "b" });
    const id = migrations[0]!.id;
    // the same assignment sent again (its answer lost): answered with the move under way
    const resent = await admin.assignCommand({ command: "Y", shard: "b" });
    expect(resent.plan).toEqual([]);
    expect(resent.migrations.map((m) => m.id)).toEqual([id]);
    await within(10_000, async () => (await stats("b", "Y")).ready === 29);
    await c.enqueue({ command: "Y", payload: payload("on b") });
    const aborted = await admin.abortMigration({ id });
    expect(aborted.migration!.state).toBe(MigrationState.MIGRATION_STATE_ABORTING);
    await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
    const done = (await admin.getMigration({ id })).migration!;
    expect(done.state).toBe(MigrationState.MIGRATION_STATE_ABORTED);
    // an abort's counts are of the way back: the 29 that went, and the one enqueued on b
    expect(done.moved!.ready).toBe(30);
    expect(await stats("b", "Y")).toMatchObject({ ready: 0, scheduled: 0, dead: 0 });
    expect((await stats("a", "Y")).ready).toBe(30);
    expect((await stats("a", "Y")).leased).toBe(1);
    expect(rc.router.routing.currentShard("Y", "t1")).toBe("a");
    // Y followed the default shard before the move, and does again: not pinned to a
    expect((await rc.source.get())!.commands).not.toHaveProperty("Y");
    await c.ack({ items: [{ leaseToken: hold.tasks[0]!.leaseToken }] });
    // an abort sent again (its answer lost, say) once the move is back: what it asked is done
    const again = await admin.abortMigration({ id });
    expect(again.migration).toMatchObject({ id, state: MigrationState.MIGRATION_STATE_ABORTED });
  }, 30_000);

  test("an aborted move of a tenant's queue leaves the override it had, and none it had not", async () => {
    const admin = rc.admin();
    const moveAndAbort = async (tenant: string) => {
      const c = rc.client(tenant);
      await c.enqueue({ command: "Z", payload: payload(tenant) });
      // a leased task keeps the move from completing before the abort
      const hold = await c.lease({ commands: ["Z"], maxTasks: 1 });
      const { migrations } = await admin.assignCommand({ command: "Z", tenant, shard: "c" });
      await admin.abortMigration({ id: migrations[0]!.id });
      await c.ack({ items: [{ leaseToken: hold.tasks[0]!.leaseToken }] });
      await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
      return (await rc.source.get())!.tenants;
    };
    // t5 followed Z's shard (the default, a): after the abort it follows it again
    expect(await moveAndAbort("t5")).not.toHaveProperty(["Z/t5"]);
    expect(rc.router.routing.currentShard("Z", "t5")).toBe("a");
    // t6 was routed to a by an override of its own: the override stays
    await rc.change((m) => ({ ...m, tenants: { ...m.tenants, "Z/t6": "a" } }));
    expect(await moveAndAbort("t6")).toMatchObject({ "Z/t6": "a" });
  }, 30_000);

  test("a move's first batch waits a second after the switch", async () => {
    await enqueueNumbered("X", 5);
    const sent = Date.now();
    await rc.admin().assignCommand({ command: "X", shard: "b" });
    await within(10_000, async () => (await stats("b", "X")).ready === 5);
    // the routers and workers move the live traffic to b first
    expect(Date.now() - sent).toBeGreaterThanOrEqual(1_000);
    await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
  }, 30_000);

  test("an abort in the middle of a mover's pass is not taken for a completion", async () => {
    // a slow pass on a (batches of 10, each followed by a rest 19 times as long); b's
    // mover is off, so nothing comes back to a once the move is aborted
    await twoShards({
      shard: { moverBatch: 10, moverDutyPercent: 5 },
      perShard: { b: { mover: false } },
    });
    await enqueueNumbered("X", 100);
    const admin = rc.admin();
    const { migrations } = await admin.assignCommand({ command: "X", shard: "b" });
    const id = migrations[0]!.id;
    await within(10_000, async () => (await stats("b", "X")).ready > 0);
    await admin.abortMigration({ id });
    // long enough for a's pass to have emptied a, had it gone on
    await sleep(2_000);
    const [a, b] = [(await stats("a", "X")).ready, (await stats("b", "X")).ready];
    expect(a + b).toBe(100);
    expect(a).toBeGreaterThan(50); // a's pass stopped at the abort (one batch in flight at most)
    // still aborting (b moves the tasks home when its mover runs), not recorded completed
    const m = (await admin.getMigration({ id })).migration!;
    expect(m.state).toBe(MigrationState.MIGRATION_STATE_ABORTING);
    expect((await rc.source.get())!.migrations.map((x) => x.id)).toEqual([id]);
  }, 60_000);

  /** Shards a and b, batches of five, tasks "0" … "19" of X on a and "own" on b. */
  async function twenty(): Promise<void> {
    await twoShards({ shard: { moverBatch: 5 } });
    await enqueueNumbered("X", 20);
    await rc.workers
      .get("b")!
      .engine.enqueue({ command: "X", tenant: "t1" }, [{ payload: payload("own") }]);
  }

  /** b serves its own task, then "0" … "19" in their order. */
  async function ownThenTwenty(): Promise<void> {
    const leased = await rc.workers
      .get("b")!
      .engine.lease({ command: "X", tenant: "t1" }, { max: 100, leaseMs: 60_000 });
    expect(leased.map((d) => Buffer.from(d.task.payload).toString())).toEqual([
      "own",
      ...Array.from({ length: 20 }, (_, i) => `${i}`),
    ]);
  }

  test("a move onto a worker from before ready_at_head keeps the order: the mover sends the oldest first", async () => {
    await twenty();
    // the movers reach b as a build that appends every batch and says nothing of it
    const older = await olderB();
    try {
      await rc.admin().assignCommand({ command: "X", shard: "b" });
      await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
    } finally {
      await older.close();
    }
    // four batches of five, each appended: behind b's own task, in their order (sent
    // newest first, they would have come 15…19, 10…14, 5…9, 0…4)
    await ownThenTwenty();
  }, 30_000);

  test("a source restarted during a move onto a worker that appends keeps sending the oldest first, though the target was upgraded meanwhile", async () => {
    await twenty();
    const older = await olderB();
    // a's mover sends one batch, then its second export fails until a stops
    const a = rc.workers.get("a")!;
    const original = a.engine.exportBatch.bind(a.engine);
    let calls = 0;
    let reached = () => {};
    const waiting = new Promise<void>((resolve) => (reached = resolve));
    a.engine.exportBatch = async (...args) => {
      if (++calls === 1) return original(...args);
      reached();
      throw new Error("held by the test");
    };
    try {
      await rc.admin().assignCommand({ command: "X", shard: "b" });
      await waiting;
      expect((await stats("b", "X")).ready).toBe(6);
      await rc.stopShard("a");
    } finally {
      a.engine.exportBatch = original;
      await older.close();
    }
    // b is upgraded (its own address again, saying it places at the head); a restarts
    await rc.change((d) => ({
      ...d,
      shards: { ...d.shards, b: { ...d.shards.b!, endpoint: rc.addresses.get("b")! } },
    }));
    await rc.startShard("a");
    await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
    // the rest appended oldest first too; at the head, 15…19, 10…14, 5…9 would have
    // come before b's own task and the first batch
    await ownThenTwenty();
  }, 30_000);

  test("an abort's trip home puts the tasks that moved behind those the source still holds, in their order", async () => {
    await twoShards({ shard: { moverBatch: 10 } });
    const c = rc.client("t1");
    await enqueueNumbered("X", 40);
    // a's mover sends one batch (the newest ten), then waits in its next export until
    // the test lets it go: a still holds the oldest thirty when the move is aborted
    const a = rc.workers.get("a")!.engine;
    const original = a.exportBatch.bind(a);
    let exports = 0;
    let letGo = () => {};
    const held = new Promise<void>((resolve) => (letGo = resolve));
    a.exportBatch = async (...args) => {
      if (++exports === 1) return original(...args);
      await held;
      return [];
    };
    const admin = rc.admin();
    const { migrations } = await admin.assignCommand({ command: "X", shard: "b" });
    const id = migrations[0]!.id;
    await within(10_000, async () => (await stats("b", "X")).ready === 10);
    await c.enqueue({ command: "X", payload: payload("on b") });
    try {
      await admin.abortMigration({ id });
      await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
      const order = await c.lease({ commands: ["X"], maxTasks: 100 });
      expect(payloadsOf(order)).toEqual([...Array.from({ length: 40 }, (_, i) => `${i}`), "on b"]);
    } finally {
      a.exportBatch = original;
      letGo();
    }
  }, 30_000);

  /**
   * Shards a and b, 20 tasks of X on a, a move of X to b, and a's map frozen with the
   * move in progress while it is aborted and the abort ends; then a's mover, let go of
   * its first export, reserves the whole queue for a move b refuses. `thaw` gives a back
   * the live map.
   */
  async function reservedBehindAbort(
    /** Runs once the tasks are on a, before the move (its map is frozen later). */
    before: () => Promise<unknown> = async () => undefined,
    /** Where the move goes; with a shard other than b, on the cluster as it is (tasks and all). */
    to = "b",
  ): Promise<{ id: string; thaw: () => void }> {
    if (to === "b") {
      await twoShards();
      await enqueueNumbered("X", 20);
    }
    await before();
    const a = rc.workers.get("a")!;
    const cache = a.map!;
    // a's mover waits in its first export until the abort is over
    const original = a.engine.exportBatch.bind(a.engine);
    let letGo = () => {};
    const held = new Promise<void>((resolve) => (letGo = resolve));
    let reached = () => {};
    const waiting = new Promise<void>((resolve) => (reached = resolve));
    a.engine.exportBatch = async (...args) => {
      reached();
      await held;
      return original(...args);
    };
    const current = cache.current.bind(cache);
    const thaw = () => {
      cache.current = current;
      a.engine.exportBatch = original;
      letGo();
    };
    try {
      const admin = rc.admin();
      const { migrations } = await admin.assignCommand({ command: "X", shard: to });
      const id = migrations[0]!.id;
      await waiting;
      // from here the map a holds lags: it still shows the move in progress
      const lagging = cache.current();
      cache.current = () => lagging;
      await admin.abortMigration({ id });
      await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
      expect((await admin.getMigration({ id })).migration!.state).toBe(
        MigrationState.MIGRATION_STATE_ABORTED,
      );
      letGo();
      await within(5_000, async () => (await stats("a", "X")).moving === 20);
      return { id, thaw };
    } catch (err) {
      thaw();
      throw err;
    }
  }

  /** Every task of X back on a in its order, none on b, and the move verified consistent. */
  async function allBackOnA(id: string): Promise<void> {
    await within(10_000, async () => (await stats("a", "X")).moving === 0);
    expect(await stats("a", "X")).toMatchObject({ ready: 20, moving: 0 });
    expect(total(await stats("b", "X"))).toBe(0);
    expect(await rc.admin().verifyMigration({ id })).toMatchObject({
      consistent: true,
      problems: [],
    });
    const leased = await rc.client("t1").lease({ commands: ["X"], maxTasks: 100 });
    expect(payloadsOf(leased)).toEqual(Array.from({ length: 20 }, (_, i) => `${i}`));
  }

  test("a source whose map lags behind an abort puts back the batch it reserved once the abort was over", async () => {
    const { id, thaw } = await reservedBehindAbort();
    try {
      const stuck = await rc.admin().verifyMigration({ id });
      expect(stuck.consistent).toBe(false);
      expect(stuck.problems).toEqual([
        expect.stringMatching(/^shard a holds 20 tasks of X reserved for this move, which is over/),
      ]);
    } finally {
      thaw(); // a's map catches up: the move is gone, and the batch goes back
    }
    await allBackOnA(id);
  }, 30_000);

  test("a source puts back the whole batch when the target is too old to say which of it landed (no HeldTasks)", async () => {
    let older: Awaited<ReturnType<typeof olderB>> | undefined;
    try {
      const { id, thaw } = await reservedBehindAbort(
        async () => (older = await olderB({ withoutHeldTasks: true })),
      );
      thaw();
      await allBackOnA(id);
    } finally {
      await older?.close();
    }
  }, 30_000);

  test("tasks that came home, reserved again by a pass that missed the abort, go back on the source: the target no longer counts them as held", async () => {
    await twoShards({ shard: { moverBatch: 5 } });
    await enqueueNumbered("X", 20);
    const a = rc.workers.get("a")!;
    // a's mover moves two batches, then waits in its third export, past its last look
    // at the map
    const original = a.engine.exportBatch.bind(a.engine);
    let calls = 0;
    let letGo = () => {};
    const held = new Promise<void>((resolve) => (letGo = resolve));
    let reached = () => {};
    const waiting = new Promise<void>((resolve) => (reached = resolve));
    let reservedLate = () => {};
    const late = new Promise<void>((resolve) => (reservedLate = resolve));
    a.engine.exportBatch = async (...args) => {
      if (++calls !== 3) return original(...args);
      reached();
      await held;
      const out = await original(...args);
      reservedLate();
      return out;
    };
    try {
      const admin = rc.admin();
      const { migrations } = await admin.assignCommand({ command: "X", shard: "b" });
      const id = migrations[0]!.id;
      await waiting;
      expect((await stats("b", "X")).ready).toBe(10);
      // the abort brings the ten home and ends (a holds no batch reserved yet)
      await admin.abortMigration({ id });
      await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
      expect(await stats("a", "X")).toMatchObject({ ready: 20, moving: 0 });
      // the waiting export reserves the newest five, which came home; b refuses them,
      // and a's next pass puts them back rather than deleting them as held on b
      letGo();
      await late;
      await allBackOnA(id);
    } finally {
      a.engine.exportBatch = original;
      letGo();
    }
  }, 30_000);

  test("after a restart, a batch waits for the move that reserved it: an older move's target is not asked while the newer one's is down", async () => {
    // (the file's cluster: shards a, b and c) an older move of X to b, aborted at once
    await enqueueNumbered("X", 20);
    const admin = rc.admin();
    const older = (await admin.assignCommand({ command: "X", shard: "b" })).migrations[0]!.id;
    await admin.abortMigration({ id: older });
    await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
    expect(await stats("a", "X")).toMatchObject({ ready: 20, moving: 0 });
    // a newer one to c, whose batch a's lagging map reserved after its abort
    const { id } = await reservedBehindAbort(async () => undefined, "c");
    await rc.stopShard("c");
    await rc.stopShard("a");
    await rc.startShard("a");
    // the newer move's put-back fails (c is down); the older move's would ask b, which
    // holds none of the batch, and put it all back though c may hold some
    await sleep(2_000);
    expect(await stats("a", "X")).toMatchObject({ ready: 0, moving: 20 });
    await rc.startShard("c");
    await within(10_000, async () => (await stats("a", "X")).moving === 0);
    expect(await stats("a", "X")).toMatchObject({ ready: 20, moving: 0 });
    expect(await admin.verifyMigration({ id })).toMatchObject({ consistent: true, problems: [] });
  }, 40_000);

  test("a tenant's aborted move is put back while another tenant's of the same command waits for its target, which is down", async () => {
    // (the file's cluster: shards a, b and c) X of t1 and t2 on a; each move's first
    // batch stays reserved on a, its target refusing to store it
    await enqueueNumbered("X", 10);
    await rc.client("t2").enqueueBatch({
      tasks: Array.from({ length: 10 }, () => ({ command: "X", payload: payload("x") })),
    });
    refuseImports("c", (q) => q.tenant === "t1");
    refuseImports("b", (q) => q.tenant === "t2");
    const admin = rc.admin();
    const toC = (await admin.assignCommand({ command: "X", tenant: "t1", shard: "c" }))
      .migrations[0]!.id;
    const toB = (await admin.assignCommand({ command: "X", tenant: "t2", shard: "b" }))
      .migrations[0]!.id;
    await within(
      10_000,
      async () => (await stats("a", "X")).moving > 0 && (await stats("a", "X", "t2")).moving > 0,
    );
    await rc.stopShard("c");
    // the abort to c cannot end while c is down; the other one ends all the same
    await admin.abortMigration({ id: toC }).catch(() => undefined);
    await admin.abortMigration({ id: toB });
    await within(
      10_000,
      async () => !(await rc.source.get())!.migrations.some((m) => m.id === toB),
    );
    expect(await stats("a", "X", "t2")).toMatchObject({ ready: 10, moving: 0 });
    await rc.startShard("c");
  }, 40_000);

  test("an abort is refused while the source it sends the queue back to does not answer, and changes nothing", async () => {
    await twoShards({ shard: { mover: false } });
    await enqueueNumbered("X", 3);
    const admin = rc.admin();
    const id = (await admin.assignCommand({ command: "X", shard: "b" })).migrations[0]!.id;
    await rc.stopShard("a");
    const before = (await rc.source.get())!.version;
    await expect(admin.abortMigration({ id })).rejects.toMatchObject({
      code: Status.FAILED_PRECONDITION,
      details: expect.stringMatching(
        new RegExp(`^cannot abort ${id}: it sends X back to shard a \\(`),
      ),
    });
    expect((await rc.source.get())!.version).toBe(before);
    // the queue goes on on b
    expect(await code(rc.client("t1").enqueue({ command: "X" }))).toBe(Status.OK);
    await rc.startShard("a");
    await within(5_000, async () => (await code(admin.abortMigration({ id }))) === Status.OK);
  }, 30_000);

  test("a source restarted before its lagging map caught up puts back the batch it reserved for the aborted move", async () => {
    const { id } = await reservedBehindAbort();
    // a stops before its map shows the move gone: that process never puts the batch back
    await rc.stopShard("a");
    await rc.startShard("a");
    await allBackOnA(id);
  }, 30_000);

  /**
   * Stands in for a slow answer to ImportTasks from b (a large batch, a slow link):
   * `during` runs once, after b stored its first batch and before a hears so.
   */
  function slowFirstImportAnswer(during: () => Promise<void>): void {
    const b = rc.workers.get("b")!.engine;
    const original = b.importTasks.bind(b);
    let done = false;
    b.importTasks = async (q, tasks, migrationId, placement) => {
      const out = await original(q, tasks, migrationId, placement);
      if (!done && tasks.length > 0) {
        done = true;
        await during();
      }
      return out;
    };
  }

  const total = (s: { ready: number; scheduled: number; dead: number; leased: number }) =>
    s.ready + s.scheduled + s.dead + s.leased;

  test("tasks the target refuses stay reserved on the source, and the migration's last error says so", async () => {
    await enqueueNumbered("X", 5);
    const b = rc.workers.get("b")!.engine;
    const original = b.importTasks.bind(b);
    let victim = "";
    // stands in for an item the import script refuses: answered neither imported nor present
    b.importTasks = async (q, tasks, migrationId, placement) => {
      const out = await original(q, tasks, migrationId, placement);
      victim ||= tasks[0]?.task.id ?? "";
      return {
        imported: out.imported.filter((x) => x !== victim),
        alreadyPresent: out.alreadyPresent.filter((x) => x !== victim),
      };
    };
    const admin = rc.admin();
    try {
      const { migrations } = await admin.assignCommand({ command: "X", shard: "b" });
      const id = migrations[0]!.id;
      await within(10_000, async () =>
        (await admin.getMigration({ id })).migration!.lastError.includes(`shard b refused 1 of`),
      );
      expect((await admin.getMigration({ id })).migration!.lastError).toContain(victim);
      expect(await stats("a", "X")).toMatchObject({ ready: 0, moving: 1 });
    } finally {
      b.importTasks = original;
    }
    // taken at last (it was stored there all along: present), the move completes
    await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
    expect(await stats("a", "X")).toMatchObject({ ready: 0, moving: 0 });
    expect((await stats("b", "X")).ready).toBe(5);
  }, 30_000);

  test("an abort while a batch's import is unanswered brings the batch home, not deletes it on both shards", async () => {
    await enqueueNumbered("X", 5);
    let id = "";
    // b stored the batch; before a hears so, the move is aborted and b sends it back
    slowFirstImportAnswer(async () => {
      await rc.admin().abortMigration({ id });
      await within(5_000, async () => total(await stats("b", "X")) === 0);
      await sleep(100);
    });
    const { migrations } = await rc.admin().assignCommand({ command: "X", shard: "b" });
    id = migrations[0]!.id;
    await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
    await sleep(500); // a's late confirmation of the first export has come and gone
    expect(await stats("a", "X")).toMatchObject({ ready: 5, moving: 0 });
    expect(total(await stats("b", "X"))).toBe(0);
    expect((await rc.client("t1").lease({ commands: ["X"], maxTasks: 10 })).tasks).toHaveLength(5);
  }, 30_000);

  test("an abort after a batch landed on the target, its answer lost, leaves the target's copies to it: no task is held on both shards", async () => {
    await enqueueNumbered("X", 5);
    let id = "";
    let leased: { taskId: string; leaseToken: string } | undefined;
    // b stores a's first batch (all five) and a worker leases one of them from b; the
    // move is aborted; the import's answer never reaches a (a timeout, a crash)
    slowFirstImportAnswer(async () => {
      const got = await rc.client("t1").lease({ commands: ["X"], maxTasks: 1 });
      const t = got.tasks[0]!;
      leased = { taskId: t.task!.id, leaseToken: t.leaseToken };
      expect(t.task!.shard).toBe("b");
      await rc.admin().abortMigration({ id });
      throw new Error("the answer was lost");
    });
    const { migrations } = await rc.admin().assignCommand({ command: "X", shard: "b" });
    id = migrations[0]!.id;
    await within(10_000, () => leased !== undefined);
    // a puts back only what b does not hold; b sends home the four it holds ready
    await within(10_000, async () => {
      const s = await stats("a", "X");
      return s.ready === 4 && s.moving === 0;
    });
    expect(
      await rc.workers.get("a")!.engine.getTask({ command: "X", tenant: "t1" }, leased!.taskId),
    ).toBeUndefined();
    // the worker finishes it on b; then the abort ends, nothing left on b
    const acked = await rc.client("t1").ack({ items: [{ leaseToken: leased!.leaseToken }] });
    expect(acked.results[0]!.code).toBe(Status.OK);
    await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
    const again = await rc.client("t1").lease({ commands: ["X"], maxTasks: 10 });
    expect(again.tasks.map((t) => t.task!.id)).not.toContain(leased!.taskId);
    expect(again.tasks).toHaveLength(4);
  }, 30_000);

  test("an abort after a landed task was finished and deleted on the target does not put it back on the source", async () => {
    // b deletes a task at its ack (no completed retention)
    await twoShards({ perShard: { b: { completedRetentionMs: 0 } } });
    await enqueueNumbered("X", 3);
    let id = "";
    let finished = "";
    const b = rc.workers.get("b")!.engine;
    slowFirstImportAnswer(async () => {
      // a worker leases one of the batch from b and finishes it: b deletes it
      const got = await rc.client("t1").lease({ commands: ["X"], maxTasks: 1 });
      finished = got.tasks[0]!.task!.id;
      await rc.client("t1").ack({ items: [{ leaseToken: got.tasks[0]!.leaseToken }] });
      expect(await b.getTask({ command: "X", tenant: "t1" }, finished)).toBeUndefined();
      await rc.admin().abortMigration({ id });
      throw new Error("the answer was lost");
    });
    const { migrations } = await rc.admin().assignCommand({ command: "X", shard: "b" });
    id = migrations[0]!.id;
    await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
    await within(10_000, async () => {
      const s = await stats("a", "X");
      return s.ready === 2 && s.moving === 0;
    });
    const again = await rc.client("t1").lease({ commands: ["X"], maxTasks: 10 });
    expect(again.tasks.map((t) => t.task!.id)).not.toContain(finished);
    expect(again.tasks).toHaveLength(2);
  }, 30_000);

  /**
   * Has a's first exported batch wait until the move is aborted and b has seen the
   * abort (then runs `then`): its import reaches b too late. `exported()` says it did.
   */
  function abortAfterFirstExport(
    id: () => string,
    then: () => Promise<void> = async () => undefined,
  ): { exported: () => boolean } {
    const a = rc.workers.get("a")!.engine;
    const original = a.exportBatch.bind(a);
    let done = false;
    a.exportBatch = async (...args) => {
      const batch = await original(...args);
      if (!done && batch.length > 0) {
        done = true;
        await rc.admin().abortMigration({ id: id() });
        await within(2_000, () =>
          rc.workers
            .get("b")!
            .map!.current()
            .migrations.every((m) => m.state === "aborting"),
        );
        await then();
      }
      return batch;
    };
    return { exported: () => done };
  }

  const enqueueX = (n: number) =>
    rc.client("t1").enqueueBatch({
      tasks: Array.from({ length: n }, (_, i) => ({ command: "X", payload: payload(`${i}`) })),
    });

  test("an import that arrives after the abort reached the target is refused, and the batch is put back on the source", async () => {
    await enqueueX(5);
    let id = "";
    // a reserved its first batch; the import reaches b only after b has seen the abort
    // (b, holding nothing, would have finished the abort, and the batch would have
    // stayed on b, where no router reads X)
    const { exported } = abortAfterFirstExport(
      () => id,
      async () => {
        await sleep(500); // b's mover has had a pass: it finished nothing yet
        expect((await rc.source.get())!.migrations.map((m) => m.id)).toEqual([id]);
      },
    );
    const { migrations } = await rc.admin().assignCommand({ command: "X", shard: "b" });
    id = migrations[0]!.id;
    await within(10_000, exported);
    await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
    expect(total(await stats("b", "X"))).toBe(0);
    expect(await stats("a", "X")).toMatchObject({ ready: 5, moving: 0 });
    expect((await rc.client("t1").lease({ commands: ["X"], maxTasks: 10 })).tasks).toHaveLength(5);
  }, 30_000);

  test("a put-back that fails (the store away a moment) is tried again, and the abort still ends", async () => {
    await enqueueX(5);
    let id = "";
    const a = rc.workers.get("a")!.engine;
    // a reserves its first batch; the abort reaches b before the import does
    abortAfterFirstExport(() => id);
    // the first put-back fails
    const restoreExport = a.restoreExport.bind(a);
    let failed = 0;
    a.restoreExport = async (q) => {
      if (failed++ === 0) throw new Error("Connection is closed.");
      return restoreExport(q);
    };
    const { migrations } = await rc.admin().assignCommand({ command: "X", shard: "b" });
    id = migrations[0]!.id;
    await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
    expect(failed).toBeGreaterThanOrEqual(2);
    expect(await stats("a", "X")).toMatchObject({ ready: 5, moving: 0 });
  }, 30_000);

  test("the mover yields to a busy shard worker, and the move still completes", async () => {
    // three batches; yielding at 70% of event-loop utilisation (the default)
    await twoShards({ shard: { moverBatch: 10 } });
    const yielded = async () => {
      let seconds = 0;
      for (const w of rc.workers.values()) {
        const metric = await w.metrics.registry
          .getSingleMetric("codeq_mover_yield_seconds_total")!
          .get();
        seconds += metric.values[0]?.value ?? 0;
      }
      return seconds;
    };
    await rc.client("t1").enqueueBatch({
      tasks: Array.from({ length: 30 }, (_, i) => ({
        command: "X",
        payload: payload(`${i}`),
        delayMs: 600_000,
      })),
    });
    // the workers share this process: keep its event loop 80% busy while X moves
    const load = setInterval(() => spin(40), 50);
    let spinning = true;
    try {
      await sleep(400); // longer than the gauges' period: they read the load from the start
      const { migrations } = await rc.admin().assignCommand({ command: "X", shard: "b" });
      await within(20_000, async () => (await rc.source.get())!.migrations.length === 0);
      clearInterval(load);
      spinning = false;
      const done = (await rc.admin().getMigration({ id: migrations[0]!.id })).migration!;
      expect(done.state).toBe(MigrationState.MIGRATION_STATE_COMPLETED);
      expect(done.moved!.scheduled).toBe(30);
      expect((await stats("b", "X")).scheduled).toBe(30);
      // it waited before each batch, up to a second each time
      expect(await yielded()).toBeGreaterThan(1);
    } finally {
      if (spinning) clearInterval(load);
    }
    // unloaded (once the busy periods have passed), the move back hardly waits
    await sleep(600);
    const before = await yielded();
    await rc.admin().assignCommand({ command: "X", shard: "a" });
    await within(20_000, async () => (await rc.source.get())!.migrations.length === 0);
    expect((await stats("a", "X")).scheduled).toBe(30);
    expect((await yielded()) - before).toBeLessThan(0.5);
  }, 60_000);

  test("bad assignments are refused with a status that says why, and change nothing", async () => {
    const admin = rc.admin();
    const before = (await rc.source.get())!.version;
    expect(await code(admin.assignCommand({ command: "", shard: "b" }))).toBe(
      Status.INVALID_ARGUMENT,
    );
    expect(await code(admin.assignCommand({ command: "bad name", shard: "b" }))).toBe(
      Status.INVALID_ARGUMENT,
    );
    expect(await code(admin.assignCommand({ command: "X", shard: "zz" }))).toBe(Status.NOT_FOUND);
    expect(
      await code(admin.assignCommand({ command: "X", shard: "b", expectedVersion: before + 7 })),
    ).toBe(Status.ABORTED);
    const noop = await admin.assignCommand({ command: "X", shard: "a" });
    expect(noop).toMatchObject({ mapVersion: before, migrations: [] });
    expect((await rc.source.get())!.version).toBe(before);
  });
});

test("a map change while the control store holds a map that is not valid is FAILED_PRECONDITION, not UNAVAILABLE", async () => {
  const redis = server.client();
  try {
    const key = `${rc.router.routing.config.controlPrefix}:ctl:shardmap`;
    await redis.set(key, JSON.stringify({ version: 99, shards: "not shards" }));
    const err = await rc
      .admin()
      .assignCommand({ command: "Q", shard: "b" })
      .catch((e: ClientError) => e);
    expect((err as ClientError).code).toBe(Status.FAILED_PRECONDITION);
    expect((err as ClientError).details).toMatch(/shard map is not valid/);
  } finally {
    redis.disconnect();
  }
});

describe("shards come and go through AdminService", () => {
  /**
   * Adds shard `id` at `endpoint` to the stored map by a write straight to its key (no
   * validation, no announcement): a hand edit, or a router older than a rule.
   */
  const writeShardByHand = async (id: string, endpoint: string) => {
    const redis = rc.server.client();
    try {
      const current = (await rc.source.get())!;
      const { version: _v, updatedAtMs: _u, ...rest } = current;
      const shards = { ...current.shards, [id]: { endpoint, state: "active" } };
      const next = { ...rest, version: current.version + 1, updatedAtMs: Date.now(), shards };
      await redis.set(shardMapKey(rc.prefix), JSON.stringify(next));
    } finally {
      redis.disconnect();
    }
  };

  /** RegisterShard of `id` at shard c's worker's endpoint is refused, the map unchanged. */
  const expectRefusedOnC = async (id: string) => {
    const version = (await rc.source.get())!.version;
    const taken = await rc
      .admin()
      .registerShard({
        shard: { id, endpoint: rc.addresses.get("c")!, state: ShardState.SHARD_STATE_ACTIVE },
      })
      .catch((e: unknown) => e);
    expect(taken).toMatchObject({
      code: Status.FAILED_PRECONDITION,
      details: expect.stringContaining(`is shard "c"'s too`),
    });
    expect((await rc.source.get())!.version).toBe(version);
  };

  test("RegisterShard adds one; RemoveShard refuses while it is used, then removes it", async () => {
    const admin = rc.admin();
    const d = { id: "d", endpoint: "127.0.0.1:1", state: ShardState.SHARD_STATE_ACTIVE };
    const { mapVersion: registered } = await admin.registerShard({ shard: d });
    // the same registration sent again (its answer lost): done, nothing written twice
    expect(await admin.registerShard({ shard: d })).toMatchObject({ mapVersion: registered });
    expect((await rc.source.get())!.version).toBe(registered);
    expect(
      await code(
        admin.registerShard({
          shard: { id: "d", endpoint: "127.0.0.1:2", state: ShardState.SHARD_STATE_ACTIVE },
        }),
      ),
    ).toBe(Status.ALREADY_EXISTS);
    expect(
      await code(
        admin.registerShard({
          shard: { id: "Bad!", endpoint: "x", state: ShardState.SHARD_STATE_ACTIVE },
        }),
      ),
    ).toBe(Status.INVALID_ARGUMENT);
    // another shard's worker is not a new shard: a move onto it would never end
    await expectRefusedOnC("e");
    // a state this version does not know is refused, not stored as active
    expect(
      await code(
        admin.registerShard({
          shard: { id: "e", endpoint: "127.0.0.1:3", state: 7 as ShardState },
        }),
      ),
    ).toBe(Status.INVALID_ARGUMENT);
    expect(await code(admin.removeShard({ id: "a" }))).toBe(Status.FAILED_PRECONDITION); // default
    // b holds a task: refused while it does
    await rc.workers
      .get("b")!
      .engine.enqueue({ command: "Q", tenant: "t1" }, [{ payload: payload("") }]);
    const refused = await admin.removeShard({ id: "b" }).catch((e: ClientError) => e);
    expect((refused as ClientError).code).toBe(Status.FAILED_PRECONDITION);
    expect((refused as ClientError).details).toMatch(/holds 1 task/);
    // d is unreachable: nobody can confirm it is empty
    expect(await code(admin.removeShard({ id: "d" }))).toBe(Status.FAILED_PRECONDITION);
    // nor is anything moved onto it: its enqueues would fail until an abort
    const before = (await rc.source.get())!.version;
    for (const dryRun of [true, false]) {
      const moved = await admin.assignCommand({ command: "Q", shard: "d", dryRun }).catch((e) => e);
      expect(moved).toMatchObject({
        code: Status.FAILED_PRECONDITION,
        details: expect.stringMatching(/^cannot move Q to shard d \(.*\); start its worker/),
      });
    }
    expect((await rc.source.get())!.version).toBe(before);
    // c holds a batch a move reserved (as an abort can leave one behind): refused too,
    // for no router reads it there
    const onC = rc.workers.get("c")!.engine;
    const r = { command: "R", tenant: "t1" };
    await onC.enqueue(r, [{ payload: payload("") }]);
    expect(await onC.exportBatch(r, 10)).toHaveLength(1);
    expect(await onC.stats(r)).toMatchObject({ ready: 0, moving: 1 });
    const reserved = await admin.removeShard({ id: "c" }).catch((e: ClientError) => e);
    expect(reserved).toMatchObject({
      code: Status.FAILED_PRECONDITION,
      details: expect.stringMatching(/holds 1 task/),
    });
    await onC.restoreExport(r);
    const [back] = await onC.lease(r, { max: 1, leaseMs: 60_000 });
    await onC.ack([{ token: back!.token }]);
    // c is empty and answers: it goes
    const { mapVersion } = await admin.removeShard({ id: "c" });
    const map = (await rc.source.get())!;
    expect(map.version).toBe(mapVersion);
    expect(Object.keys(map.shards).sort()).toEqual(["a", "b", "d"]);
    expect(await code(admin.removeShard({ id: "nope" }))).toBe(Status.NOT_FOUND);
  });

  test("a stored map whose shards already share an endpoint still takes changes; a new pair is refused; the extra id can be removed", async () => {
    // shard e on c's worker, as a router older than the rule could have written it
    await writeShardByHand("e", rc.addresses.get("c")!);
    const admin = rc.admin();
    // a change that makes no new pair is written (before, every write was refused
    // until the map was mended by hand)
    const { mapVersion } = await admin.registerShard({
      shard: { id: "f", endpoint: "127.0.0.1:1", state: ShardState.SHARD_STATE_ACTIVE },
    });
    const map = (await rc.source.get())!;
    expect(map.version).toBe(mapVersion);
    expect(Object.keys(map.shards).sort()).toEqual(["a", "b", "c", "e", "f"]);
    // a third shard on that worker is a pair the write would make
    await expectRefusedOnC("g");
    // no move from or to either name: c's worker would not drain or import as e
    for (const [command, shard] of [
      ["Q9", "e"],
      ["Q9", "c"],
    ] as const) {
      const moved = await admin.assignCommand({ command, shard }).catch((e: unknown) => e);
      expect(moved).toMatchObject({
        code: Status.FAILED_PRECONDITION,
        details: expect.stringMatching(/^shard [ce] shares its endpoint with shard [ce]/),
      });
    }
    expect((await rc.source.get())!.version).toBe(mapVersion);
    // e goes, though the worker at its endpoint (c's) holds a task: that task is c's
    await rc.workers
      .get("c")!
      .engine.enqueue({ command: "Q", tenant: "t1" }, [{ payload: payload("") }]);
    const removed = await admin.removeShard({ id: "e" });
    expect(Object.keys((await rc.source.get())!.shards).sort()).toEqual(["a", "b", "c", "f"]);
    expect(removed.mapVersion).toBe(mapVersion + 1);
    // c itself is still refused while it holds the task
    const refused = await admin.removeShard({ id: "c" }).catch((e: unknown) => e);
    expect(refused).toMatchObject({
      code: Status.FAILED_PRECONDITION,
      details: expect.stringContaining("shard c still holds 1 tasks"),
    });
    // with the pair mended, c takes moves again
    expect((await admin.assignCommand({ command: "Q9", shard: "c" })).migrations).toHaveLength(1);
  });

  test("RemoveShard waits for a router that has not connected to the shard yet", async () => {
    await rc.workers
      .get("b")!
      .engine.enqueue({ command: "Q", tenant: "t9" }, [{ payload: payload("") }]);
    // shard e (worker b, which holds a task, reached through a relay: one worker has one
    // endpoint in a map) written straight to the key, as a change whose announcement has
    // not reached this router yet (it polls every 1000 ms)
    const [host, port] = rc.addresses.get("b")!.split(":");
    const relay = await startRelay(host!, Number(port));
    try {
      await writeShardByHand("e", `127.0.0.1:${relay.port}`);
      const early = await rc
        .admin()
        .removeShard({ id: "e" })
        .catch((e: ClientError) => e);
      // refused either way: not connected yet (as a rule), or, had a poll come in those
      // few milliseconds, asked and found holding a task
      if ((early as ClientError).code === Status.UNAVAILABLE)
        expect((early as ClientError).details).toMatch(/has not connected to shard e yet/);
      else expect((early as ClientError).code).toBe(Status.FAILED_PRECONDITION);
      expect(Object.keys((await rc.source.get())!.shards)).toContain("e");
      // once it has, it asks the shard, whose worker answers as b (and holds a task):
      // e's own worker cannot be asked
      await within(2_500, async () => rc.router.routing.pool.has("e"));
      const refused = await rc
        .admin()
        .removeShard({ id: "e" })
        .catch((e: ClientError) => e);
      expect((refused as ClientError).code).toBe(Status.FAILED_PRECONDITION);
      expect((refused as ClientError).details).toMatch(/endpoint answers as shard b/);
      await rc.change(({ shards: { e: _e, ...shards }, ...m }) => ({ ...m, shards }));
    } finally {
      // a failed check above must not leave the relay open (jest would not exit)
      await relay.close();
    }
  });

  test("RemoveShard sees a task past the first 500 queues of a shard", async () => {
    const c = rc.workers.get("c")!.engine;
    // 600 queues that held a task and hold none now, then one task in the last of them
    const tenants = Array.from({ length: 600 }, (_, i) => `t${String(i).padStart(3, "0")}`);
    for (const tenant of tenants) {
      const { deliveries } = await c.enqueueAndLease(
        { command: "Q", tenant },
        [{ payload: payload("") }],
        { max: 1, leaseMs: 60_000 },
      );
      await c.ack(deliveries.map((d) => ({ token: d.token })));
    }
    await c.enqueue({ command: "Q", tenant: "t599" }, [{ payload: payload("last") }]);
    expect((await c.queues()).length).toBe(600);
    const refused = await rc
      .admin()
      .removeShard({ id: "c" })
      .catch((e: ClientError) => e);
    expect((refused as ClientError).code).toBe(Status.FAILED_PRECONDITION);
    expect((refused as ClientError).details).toMatch(/holds 1 task/);
    expect(Object.keys((await rc.source.get())!.shards)).toContain("c");
  });

  test("ListAuditEvents pages on without repeating entries while changes come in", async () => {
    const admin = rc.admin();
    const register = (id: string, port: number) =>
      admin.registerShard({
        shard: { id, endpoint: `127.0.0.1:${port}`, state: ShardState.SHARD_STATE_ACTIVE },
      });
    for (const [i, id] of ["p1", "p2", "p3", "p4"].entries()) await register(id, 20 + i);
    const all = (await admin.listAuditEvents({ pageSize: 1000 })).events.map((e) => e.versionAfter);
    const first = await admin.listAuditEvents({ pageSize: 2 });
    expect(first.events.map((e) => e.versionAfter)).toEqual(all.slice(0, 2));
    // two changes while the operator reads: they push the log down by two
    await register("p5", 30);
    await register("p6", 31);
    const second = await admin.listAuditEvents({ pageSize: 2, pageToken: first.nextPageToken });
    expect(second.events.map((e) => e.versionAfter)).toEqual(all.slice(2, 4));
    const rest: number[] = [];
    for (let token = second.nextPageToken; token;) {
      const page = await admin.listAuditEvents({ pageSize: 2, pageToken: token });
      rest.push(...page.events.map((e) => e.versionAfter));
      token = page.nextPageToken;
    }
    expect(rest).toEqual(all.slice(4));
    expect(await code(admin.listAuditEvents({ pageSize: 2, pageToken: "bm90LWEtdG9rZW4" }))).toBe(
      Status.INVALID_ARGUMENT,
    );
  });

  test("ListMigrations pages newest first without repeating one while moves start", async () => {
    const admin = rc.admin();
    const move = async (command: string) => {
      const { migrations } = await admin.assignCommand({ command, shard: "b" });
      return migrations[0]!.id;
    };
    const started = [await move("PAGED1"), await move("PAGED2"), await move("PAGED3")];
    const list = (pageSize: number, pageToken = "") =>
      admin.listMigrations({ includeFinished: true, pageSize, pageToken });
    const ours = (ids: string[]) => ids.filter((id) => started.includes(id));
    // newest first (two started in one millisecond go by id)
    const whole = ours((await list(1000)).migrations.map((m) => m.id));
    expect(whole).toHaveLength(3);
    const first = await list(1);
    expect(first.migrations.map((m) => m.id)).toEqual([whole[0]]);
    await move("PAGED4"); // newer: in front of everything listed so far
    const seen = [...first.migrations.map((m) => m.id)];
    for (let token = first.nextPageToken; token;) {
      const page = await list(1, token);
      seen.push(...page.migrations.map((m) => m.id));
      token = page.nextPageToken;
    }
    expect(ours(seen)).toEqual(whole);
    expect(new Set(seen).size).toBe(seen.length);
  });
});

describe("RemoveShard and a shard whose store is down", () => {
  let own: RedisServer;
  beforeEach(async () => {
    own = await RedisServer.start();
    await rc.close(); // the shared cluster of this file; this one gives c its own store
    rc = await routerCluster({
      server,
      shards: ["a", "b", "c"],
      perShard: { c: { redisUrl: own.url } },
    });
  });
  afterEach(async () => {
    await own.stop();
  });

  test("is refused: a worker that cannot read its store cannot show it holds nothing", async () => {
    await rc.workers
      .get("c")!
      .engine.enqueue({ command: "Q", tenant: "t1" }, [{ payload: payload("kept") }]);
    await own.stop();
    const status = () =>
      rc.router.routing.pool
        .get("c")
        .internal.getShardStatus({}, { deadline: new Date(Date.now() + 5_000) });
    await within(10_000, async () => !(await status()).storeReachable);
    expect((await status()).queueDepth).toBe(0); // what it reports: nothing it could count
    const refused = await rc
      .admin()
      .removeShard({ id: "c" })
      .catch((e: ClientError) => e);
    expect((refused as ClientError).code).toBe(Status.FAILED_PRECONDITION);
    expect((refused as ClientError).details).toMatch(/store does not answer/);
    expect(Object.keys((await rc.source.get())!.shards)).toContain("c");
  });

  test("a move onto a shard does not wait for its depth, which removing it does", async () => {
    // a depth read that does not finish in time (a shard of very many queues)
    const metrics = rc.workers.get("c")!.metrics;
    metrics.depthByCommand = () => Promise.reject(new Error("still counting"));
    const plan = await rc.admin().assignCommand({ command: "Q", shard: "c", dryRun: true });
    expect(plan.plan[0]).toMatchObject({ toShard: "c" });
    const refused = await rc
      .admin()
      .removeShard({ id: "c" })
      .catch((e: ClientError) => e);
    expect((refused as ClientError).code).toBe(Status.FAILED_PRECONDITION);
  });
});

describe("RemoveShard of a shard lost for good", () => {
  const removeLost = (id: string, reassignTo = "") =>
    rc.admin().removeShard({ id, lost: true, reassignTo });
  /** X of t1 moving from a to b, whose first batch b refused, stays reserved on a; b stops. */
  const batchReservedForLostB = async () => {
    await enqueueNumbered("X", 5);
    refuseImports("b", (q) => q.command === "X");
    const id = (await rc.admin().assignCommand({ command: "X", shard: "b" })).migrations[0]!.id;
    await within(10_000, async () => (await stats("a", "X")).moving === 5);
    await rc.stopShard("b");
    return id;
  };
  const abandoned = async (id: string, lostShard: string) =>
    expect((await rc.admin().getMigration({ id })).migration).toMatchObject({
      state: MigrationState.MIGRATION_STATE_ABANDONED,
      lostShard,
    });

  test("is refused while the shard answers, or without reassign_to while queues are routed to it, and changes nothing", async () => {
    const version = (await rc.source.get())!.version;
    await expect(removeLost("a", "c")).rejects.toMatchObject({
      code: Status.FAILED_PRECONDITION,
      details: expect.stringMatching(/^shard a answers, and so does its store: it is not lost/),
    });
    await rc.stopShard("a");
    await expect(removeLost("a")).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
      details: "reassign_to is required: shard a is the default shard",
    });
    await expect(removeLost("a", "a")).rejects.toMatchObject({ code: Status.INVALID_ARGUMENT });
    await expect(removeLost("a", "zz")).rejects.toMatchObject({ code: Status.NOT_FOUND });
    await expect(rc.admin().removeShard({ id: "b", reassignTo: "c" })).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
    });
    expect((await rc.source.get())!.version).toBe(version);
  });

  test("a lost source: its queues go to reassign_to, its move ends ABANDONED with the queue on the target", async () => {
    // a moves nothing: the move is still copying when a is lost
    await rc.close();
    rc = await routerCluster({
      server,
      shards: ["a", "b", "c"],
      perShard: { a: { mover: false } },
    });
    await rc.change((m) => ({ ...m, commands: { ...m.commands, Y: "a" } }));
    await enqueueNumbered("X", 5);
    const admin = rc.admin();
    const id = (await admin.assignCommand({ command: "X", shard: "b" })).migrations[0]!.id;
    await rc.stopShard("a");
    await removeLost("a", "c");
    const map = (await rc.source.get())!;
    expect(Object.keys(map.shards).sort()).toEqual(["b", "c"]);
    expect(map).toMatchObject({ defaultShard: "c", commands: { X: "b", Y: "c" }, migrations: [] });
    await abandoned(id, "a");
    await within(5_000, () => rc.router.routing.currentShard("Y", "t1") === "c");
    await rc.client("t1").enqueue({ command: "X" });
    await rc.client("t1").enqueue({ command: "Y" });
    expect((await stats("b", "X")).ready).toBe(1);
    expect((await stats("c", "Y")).ready).toBe(1);
  }, 30_000);

  test("a lost target: the source puts back the batch it reserved for it, and serves the queue again", async () => {
    const id = await batchReservedForLostB();
    await removeLost("b");
    expect((await rc.source.get())!).toMatchObject({ commands: {}, migrations: [] });
    await abandoned(id, "b");
    await within(10_000, async () => (await stats("a", "X")).moving === 0);
    expect((await stats("a", "X")).ready).toBe(5);
    const leased = await rc.client("t1").lease({ commands: ["X"], maxTasks: 10 });
    expect(payloadsOf(leased)).toEqual(["0", "1", "2", "3", "4"]);
  }, 30_000);

  test("a target lost during an abort: the source puts back its batch, though it restarted since", async () => {
    const id = await batchReservedForLostB();
    await rc.admin().abortMigration({ id }); // a answers; its put-back cannot ask b
    // a new process on a: it never saw the move copying, only aborting
    await rc.stopShard("a");
    await rc.startShard("a");
    await sleep(500);
    expect((await stats("a", "X")).moving).toBe(5);
    await removeLost("b");
    await abandoned(id, "b");
    await within(10_000, async () => (await stats("a", "X")).moving === 0);
    expect((await stats("a", "X")).ready).toBe(5);
  }, 30_000);

  test("a source lost during an abort: the target puts back the batch it reserved for the trip home", async () => {
    await enqueueNumbered("X", 5);
    // one task leased on a keeps the move from completing
    expect((await rc.client("t1").lease({ commands: ["X"], maxTasks: 1 })).tasks).toHaveLength(1);
    const admin = rc.admin();
    const id = (await admin.assignCommand({ command: "X", shard: "b" })).migrations[0]!.id;
    await within(10_000, async () => (await stats("b", "X")).ready === 4);
    refuseImports("a", (q) => q.command === "X");
    await admin.abortMigration({ id });
    await within(10_000, async () => (await stats("b", "X")).moving === 4);
    await rc.stopShard("a");
    await removeLost("a", "c");
    expect((await rc.source.get())!).toMatchObject({ commands: { X: "b" }, migrations: [] });
    await abandoned(id, "a");
    await within(10_000, async () => (await stats("b", "X")).moving === 0);
    expect((await stats("b", "X")).ready).toBe(4);
  }, 30_000);
});

describe("the default shard and shard states change through AdminService", () => {
  const mapNow = async () => (await rc.source.get())!;

  test("SetDefaultShard keeps the queues the default holds where they are; new commands go to the new default", async () => {
    const c1 = rc.client("t1");
    await enqueueNumbered("OLD1", 2);
    await rc.client("t2").enqueue({ command: "OLD2", payload: payload("x") });
    await rc.change((m) => ({ ...m, commands: { ...m.commands, MAPPED: "c" } }));
    await within(2_000, () => rc.router.routing.currentShard("MAPPED", "t1") === "c");
    await c1.enqueue({ command: "MAPPED", payload: payload("m") });
    const admin = rc.admin();
    // a dry run says what it would pin, and writes nothing
    const before = (await mapNow()).version;
    expect(await admin.setDefaultShard({ shard: "b", dryRun: true })).toMatchObject({
      mapVersion: before,
      previous: "a",
      pinned: ["OLD1", "OLD2"],
      migrations: [],
    });
    expect((await mapNow()).version).toBe(before);
    const res = await admin.setDefaultShard({ shard: "b" });
    // two changes: the default (a still read for its queues), then a no longer read once
    // its worker confirmed the map and said it took nothing new meanwhile
    expect(res).toMatchObject({
      mapVersion: before + 2,
      previous: "a",
      pinned: ["OLD1", "OLD2"],
      migrations: [],
      finished: true,
    });
    const after = await mapNow();
    expect(after).toMatchObject({
      version: before + 2,
      defaultShard: "b",
      commands: { OLD1: "a", OLD2: "a", MAPPED: "c" },
    });
    expect(after.formerDefault).toBeUndefined();
    await within(2_000, () => rc.router.routing.map.version === after.version);
    // the queues a held stay there; a command never seen goes to b
    await c1.enqueue({ command: "OLD1", payload: payload("2") });
    await c1.enqueue({ command: "NEW", payload: payload("n") });
    expect(await stats("a", "OLD1")).toMatchObject({ ready: 3 });
    expect(await stats("b", "NEW")).toMatchObject({ ready: 1 });
    expect(await stats("a", "NEW")).toMatchObject({ ready: 0 });
    expect(payloadsOf(await c1.lease({ commands: ["OLD1"], maxTasks: 10 }))).toEqual([
      "0",
      "1",
      "2",
    ]);
    // the default again: nothing written
    expect(await admin.setDefaultShard({ shard: "b" })).toMatchObject({
      mapVersion: after.version,
      previous: "b",
      pinned: [],
    });
    expect((await mapNow()).version).toBe(after.version);
    const audit = await admin.listAuditEvents({ pageSize: 2 });
    expect(audit.events.map((e) => [e.action, e.summary])).toEqual([
      ["SetDefaultShard", "finished: a is no longer read for the default's queues"],
      ["SetDefaultShard", "default shard a → b; OLD1, OLD2 stay on a"],
    ]);
  });

  /** Restarts the cluster, its workers finishing a default change left unfinished after `ms`. */
  async function finishingAfter(ms: number): Promise<void> {
    await rc.close();
    rc = await routerCluster({
      server,
      shards: ["a", "b", "c"],
      shard: { defaultFinishAfterMs: ms },
    });
  }

  /**
   * SetDefaultShard from a to c whose last write the control store does not take; the
   * first write is followed by a task of STRAY that a takes (a router that still held
   * the old map sent it before a had the change). Answers the call's response.
   */
  async function defaultChangeLeftUnfinished() {
    const a = rc.workers.get("a")!.engine;
    const original = AdminStore.prototype.write;
    let writes = 0;
    const spy = jest.spyOn(AdminStore.prototype, "write").mockImplementation(async function (
      this: AdminStore,
      ...args
    ) {
      writes++;
      if (writes >= 2) throw new ServerError(Status.UNAVAILABLE, "the control store blinked");
      const written = await original.apply(this, args);
      await a.enqueue({ command: "STRAY", tenant: "t1" }, [{ payload: payload("s") }]);
      return written;
    });
    try {
      return await rc.admin().setDefaultShard({ shard: "c" });
    } finally {
      spy.mockRestore();
    }
  }

  test("a change left unfinished is finished by the former default's worker on its own", async () => {
    await finishingAfter(500);
    await defaultChangeLeftUnfinished();
    // (the call answers finished: false, or true when a's worker was quicker)
    await within(10_000, async () => (await mapNow()).formerDefault === undefined);
    const admin = rc.admin();
    const audit = await admin.listAuditEvents({ pageSize: 1 });
    expect(audit.events[0]).toMatchObject({
      actor: "shard@a",
      action: "SetDefaultShard",
      summary: "finished: a is no longer read for the default's queues",
    });
    const moves = (await admin.listMigrations({ includeFinished: true })).migrations;
    expect(moves.map((m) => [m.command, m.fromShard, m.toShard, m.requestedBy])).toEqual([
      ["STRAY", "a", "c", "shard@a"],
    ]);
    await within(10_000, async () => (await mapNow()).migrations.length === 0);
    expect(await stats("c", "STRAY")).toMatchObject({ ready: 1 });
    expect(await stats("a", "STRAY")).toMatchObject({ ready: 0 });
  });

  test("a command first enqueued on the former default while the change spread stays in reach, and is moved once the change is finished", async () => {
    // a's worker would finish the change on its own after a while: not within this test
    await finishingAfter(3_600_000);
    const a = rc.workers.get("a")!.engine;
    const admin = rc.admin();
    // the change is written; before the former default has it, a router that still
    // held the old map sends it the first task of a command it never had; then the
    // control store does not take the change's last step
    const res = await defaultChangeLeftUnfinished();
    expect(res).toMatchObject({ previous: "a", pinned: [], migrations: [], finished: false });
    expect(await mapNow()).toMatchObject({ defaultShard: "c", formerDefault: "a" });
    // a is still read for the queues that follow the default: the task is in reach
    await within(2_000, () => rc.router.routing.map.formerDefault === "a");
    const c1 = rc.client("t1");
    const got = await c1.lease({ commands: ["STRAY"], maxTasks: 1 });
    expect(payloadsOf(got)).toEqual(["s"]);
    await c1.nack({ items: [{ leaseToken: got.tasks[0]!.leaseToken, delayMs: 0 }] });
    // a keyed enqueue a took as the change spread, its answer lost: its retry reaches c,
    // which asks a for the key (as the target of a move asks its source)
    const [first] = await a.enqueue({ command: "KEYED", tenant: "t1" }, [
      { payload: payload("k"), idempotencyKey: "k1" },
    ]);
    const retry = await c1.enqueue({ command: "KEYED", idempotencyKey: "k1" });
    expect(retry).toMatchObject({ taskId: first!.id, duplicate: true });
    expect(await stats("c", "KEYED")).toMatchObject({ ready: 0 });
    // nothing that could leave it out of reach is done meanwhile
    expect(await code(admin.assignCommand({ command: "STRAY", shard: "b" }))).toBe(
      Status.FAILED_PRECONDITION,
    );
    // (a command of its own mapping may move: the former default is not read for it)
    await rc.change((m) => ({ ...m, commands: { ...m.commands, OWN: "b" } }));
    expect(await code(admin.assignCommand({ command: "OWN", shard: "c" }))).toBe(Status.OK);
    expect(await code(admin.setDefaultShard({ shard: "b" }))).toBe(Status.FAILED_PRECONDITION);
    expect(await code(admin.removeShard({ id: "a" }))).toBe(Status.FAILED_PRECONDITION);
    // the same call again finishes it: the stray command moves to the new default
    const finished = await admin.setDefaultShard({ shard: "c" });
    expect(finished).toMatchObject({ previous: "a", pinned: [], finished: true });
    expect(finished.migrations.map((m) => [m.command, m.fromShard, m.toShard])).toEqual([
      ["KEYED", "a", "c"],
      ["STRAY", "a", "c"],
    ]);
    expect(finished.mapVersion).toBe((await mapNow()).version);
    expect((await mapNow()).formerDefault).toBeUndefined();
    await within(10_000, async () => (await mapNow()).migrations.length === 0);
    expect(await stats("c", "STRAY")).toMatchObject({ ready: 1 });
    expect(await stats("a", "STRAY")).toMatchObject({ ready: 0, leased: 0 });
    // and it is the default for good: the same call changes nothing more
    expect(await admin.setDefaultShard({ shard: "c" })).toMatchObject({
      previous: "c",
      finished: true,
      mapVersion: (await mapNow()).version,
    });
  });

  test("SetDefaultShard and SetShardState refuse what they cannot do, and change nothing", async () => {
    const admin = rc.admin();
    const version = (await mapNow()).version;
    expect(await code(admin.setDefaultShard({ shard: "zz" }))).toBe(Status.NOT_FOUND);
    expect(await code(admin.setDefaultShard({ shard: "Bad!" }))).toBe(Status.INVALID_ARGUMENT);
    expect(
      await code(admin.setShardState({ id: "zz", state: ShardState.SHARD_STATE_DRAINING })),
    ).toBe(Status.NOT_FOUND);
    expect(await code(admin.setShardState({ id: "c", state: 0 as ShardState }))).toBe(
      Status.INVALID_ARGUMENT,
    );
    const defaultDraining = await admin
      .setShardState({ id: "a", state: ShardState.SHARD_STATE_DRAINING })
      .catch((e: ClientError) => e);
    expect(defaultDraining).toMatchObject({
      code: Status.FAILED_PRECONDITION,
      details: expect.stringContaining("make another shard the default first"),
    });
    expect((await mapNow()).version).toBe(version);
    // a draining shard takes no new queues: neither the default nor an assignment
    const drained = await admin.setShardState({ id: "c", state: ShardState.SHARD_STATE_DRAINING });
    expect(drained.mapVersion).toBe(version + 1);
    expect((await mapNow()).shards.c).toMatchObject({ state: "draining" });
    expect(await admin.setShardState({ id: "c", state: ShardState.SHARD_STATE_DRAINING })).toEqual(
      drained,
    );
    expect(await code(admin.setDefaultShard({ shard: "c" }))).toBe(Status.FAILED_PRECONDITION);
    expect(await code(admin.assignCommand({ command: "X", shard: "c" }))).toBe(
      Status.FAILED_PRECONDITION,
    );
    await admin.setShardState({ id: "c", state: ShardState.SHARD_STATE_ACTIVE });
    expect((await mapNow()).shards.c).toMatchObject({ state: "active" });
    // the current default's worker must say what it holds: not while it is down
    await enqueueNumbered("HELD", 1);
    const before = (await mapNow()).version;
    await rc.stopShard("a");
    try {
      const down = await admin.setDefaultShard({ shard: "b" }).catch((e: ClientError) => e);
      expect(down).toMatchObject({
        code: Status.FAILED_PRECONDITION,
        details: expect.stringContaining(
          "the current default, shard a, must say which commands it holds",
        ),
      });
      expect((await mapNow()).version).toBe(before);
    } finally {
      await rc.startShard("a");
    }
  });

  test("SetDefaultShard waits for the migrations under way", async () => {
    await twoShards({ shard: { mover: false } });
    await enqueueNumbered("MOVING", 1);
    await rc.admin().assignCommand({ command: "MOVING", shard: "b" });
    const refused = await rc
      .admin()
      .setDefaultShard({ shard: "b" })
      .catch((e: ClientError) => e);
    expect(refused).toMatchObject({
      code: Status.FAILED_PRECONDITION,
      details: expect.stringMatching(/^migration mig-\S+ \(a → b\) is copying/),
    });
    expect((await mapNow()).defaultShard).toBe("a");
  });
});
