import { ClientError, Status } from "nice-grpc";
import { MigrationState } from "@codeq/proto";
import { RedisServer } from "@codeq/testing";
import { clusterPerTest, routerCluster, within, type RouterCluster } from "./test/cluster";

const cluster = clusterPerTest({ shards: ["a", "b", "c"] });
const payload = (s: string) => Buffer.from(s);

async function code(p: Promise<unknown>): Promise<Status> {
  return p.then(
    () => Status.OK,
    (e: unknown) => (e instanceof ClientError ? e.code : Status.UNKNOWN),
  );
}

const enqueue = (tenant: string, command: string, n: number) =>
  cluster()
    .client(tenant)
    .enqueueBatch({
      tasks: Array.from({ length: n }, (_, i) => ({ command, payload: payload(`${i}`) })),
    });

/** Starts moving `command` (or one tenant's queue of it) to `shard`; the migration's id. */
async function assign(command: string, shard: string, tenant = ""): Promise<string> {
  const res = await cluster().admin().assignCommand({ command, shard, tenant });
  return res.migrations[0]!.id;
}

const state = async (id: string) => (await cluster().admin().getMigration({ id })).migration!.state;

const finished = (id: string) =>
  within(10_000, async () => {
    const s = await state(id);
    return (
      s === MigrationState.MIGRATION_STATE_COMPLETED || s === MigrationState.MIGRATION_STATE_ABORTED
    );
  });

const verify = (id: string) => cluster().admin().verifyMigration({ id });

describe("VerifyMigration counts a migration's queue on both shards and checks it against the map", () => {
  test("while a move runs both shards are read, and what each holds is counted", async () => {
    await enqueue("t1", "X", 10);
    const held = await cluster()
      .client("t1")
      .lease({ commands: ["X"], maxTasks: 2 });
    expect(held.tasks).toHaveLength(2);
    const id = await assign("X", "b");
    await within(10_000, async () => (await state(id)) === MigrationState.MIGRATION_STATE_DRAINING);

    const res = await verify(id);
    expect(res.migration).toMatchObject({ id, fromShard: "a", toShard: "b" });
    expect(res.source).toMatchObject({ shard: "a", answered: true, routed: true, unrouted: 0 });
    expect(res.source!.counts).toMatchObject({ ready: 0, leased: 2 });
    expect(res.target).toMatchObject({ shard: "b", answered: true, routed: true, unrouted: 0 });
    expect(res.target!.counts).toMatchObject({ ready: 8, leased: 0 });
    expect(res.target!.tenants).toBe(1);
    expect(res).toMatchObject({ consistent: true, problems: [] });
    expect(res.mapVersion).toBe((await cluster().source.get())!.version);
  }, 30_000);

  test("after a move the source is no longer read; a task left there is reported, other tenants' queues are not", async () => {
    await enqueue("t1", "X", 5);
    const id = await assign("X", "b");
    await finished(id);
    const done = await verify(id);
    expect(done.migration!.state).toBe(MigrationState.MIGRATION_STATE_COMPLETED);
    expect(done.source).toMatchObject({ shard: "a", answered: true, routed: false, unrouted: 0 });
    expect(done.target!.counts!.ready).toBe(5);
    expect(done.consistent).toBe(true);

    // t2's queue of X is overridden back to a: its tasks there are not the move's
    await finished(await assign("X", "a", "t2"));
    await enqueue("t2", "X", 3);
    expect(
      (await cluster().workers.get("a")!.engine.stats({ command: "X", tenant: "t2" })).ready,
    ).toBe(3);
    expect(await verify(id)).toMatchObject({
      consistent: true,
      source: { unrouted: 0, tenants: 0 },
    });

    // a task of the moved queue on a, where no router looks for it (as a bug would leave it)
    await cluster()
      .workers.get("a")!
      .engine.enqueue({ command: "X", tenant: "t1" }, [{ payload: payload("lost") }]);
    const bad = await verify(id);
    expect(bad.consistent).toBe(false);
    expect(bad.source).toMatchObject({ routed: false, unrouted: 1, tenants: 1 });
    expect(bad.source!.counts!.ready).toBe(1);
    expect(bad.problems).toHaveLength(1);
    expect(bad.problems[0]).toMatch(/^shard a holds 1 .* of X where no router reads them/);

    // reserved by a's mover (in no index): still where no router reads it
    const a = cluster().workers.get("a")!.engine;
    expect(await a.exportBatch({ command: "X", tenant: "t1" }, 10)).toHaveLength(1);
    const reserved = await verify(id);
    expect(reserved.source).toMatchObject({ moving: 1, unrouted: 1 });
    expect(reserved.source!.counts!.ready).toBe(0);
    expect(reserved.consistent).toBe(false);
  }, 30_000);

  test("a task a command-wide move left behind is reported after its tenant is moved on by a move of its own", async () => {
    await enqueue("t1", "X", 2);
    const whole = await assign("X", "b");
    await finished(whole);
    const own = await assign("X", "c", "t1");
    await finished(own);
    const mine = await verify(own);
    expect(mine.migration).toMatchObject({ tenant: "t1", fromShard: "b", toShard: "c" });
    expect(mine.source).toMatchObject({ shard: "b", routed: false, unrouted: 0 });
    expect(mine.target).toMatchObject({ shard: "c", routed: true, tenants: 1 });
    expect(mine.target!.counts!.ready).toBe(2);
    expect(mine.consistent).toBe(true);

    // t1 has an override now: not counted as the command-wide move's, still reported
    const a = cluster().workers.get("a")!.engine;
    await a.enqueue({ command: "X", tenant: "t1" }, [{ payload: payload("left") }]);
    const res = await verify(whole);
    expect(res.source).toMatchObject({ shard: "a", unrouted: 1, tenants: 0 });
    expect(res.source!.counts!.ready).toBe(0);
    expect(res.consistent).toBe(false);
  }, 30_000);

  test("after an abort the target is no longer read", async () => {
    await enqueue("t1", "X", 3);
    const held = await cluster()
      .client("t1")
      .lease({ commands: ["X"], maxTasks: 1 });
    expect(held.tasks).toHaveLength(1);
    const id = await assign("X", "b");
    await within(10_000, async () => (await state(id)) === MigrationState.MIGRATION_STATE_DRAINING);
    await cluster().admin().abortMigration({ id });
    await finished(id);
    const res = await verify(id);
    expect(res.migration!.state).toBe(MigrationState.MIGRATION_STATE_ABORTED);
    expect(res.source).toMatchObject({ shard: "a", routed: true, unrouted: 0 });
    expect(res.source!.counts).toMatchObject({ ready: 2, leased: 1 });
    expect(res.target).toMatchObject({ shard: "b", answered: true, routed: false, unrouted: 0 });
    expect(res.consistent).toBe(true);
  }, 30_000);

  test("a shard that does not answer is reported in its side; one removed from the map is not a problem", async () => {
    await cluster().change((d) => ({ ...d, commands: { X: "b" } }));
    await within(2_000, () => cluster().router.routing.currentShard("X", "t1") === "b");
    const id = await assign("X", "c");
    await finished(id);
    await cluster().stopShard("b");
    const down = await verify(id);
    expect(down.source).toMatchObject({ shard: "b", answered: false, routed: false });
    expect(down.source!.error).not.toBe("");
    expect(down.target).toMatchObject({ shard: "c", answered: true });
    expect(down.consistent).toBe(false);
    expect(down.problems).toEqual([
      expect.stringMatching(/^shard b did not answer \(.+\); verify again/),
    ]);

    await cluster().startShard("b");
    await within(5_000, async () => (await verify(id)).source!.answered);
    await cluster().admin().removeShard({ id: "b" });
    const removed = await verify(id);
    expect(removed.source).toMatchObject({
      shard: "b",
      answered: false,
      error: "shard b is no longer in the shard map",
    });
    expect(removed).toMatchObject({ consistent: true, problems: [] });
  }, 30_000);

  test("bad input changes nothing and says what is wrong", async () => {
    const admin = cluster().admin();
    expect(await code(admin.verifyMigration({ id: "" }))).toBe(Status.INVALID_ARGUMENT);
    expect(await code(admin.verifyMigration({ id: "no such id" }))).toBe(Status.INVALID_ARGUMENT);
    await expect(admin.verifyMigration({ id: "mig-none" })).rejects.toMatchObject({
      code: Status.NOT_FOUND,
      details: "no migration mig-none",
    });
    const id = await assign("X", "b");
    // no admin tenants are set (CODEQ_ROUTER_ADMIN_TENANTS): any tenant's admin may call
    expect(await code(cluster().admin("t1").verifyMigration({ id }))).toBe(Status.OK);
    expect(
      await code(cluster().adminWith({ "x-codeq-tenant": "t1" }).verifyMigration({ id })),
    ).toBe(Status.PERMISSION_DENIED);
  }, 30_000);
});

describe("while the control store does not answer", () => {
  test("finished migrations cannot be read (UNAVAILABLE); a running one is checked against the router's cached map, and the check fails saying so", async () => {
    // a server of its own, stopped and started here (not an external one)
    const control = await RedisServer.start({ spawnOnly: true });
    let rc: RouterCluster | undefined;
    try {
      rc = await routerCluster({ shards: ["a", "b", "c"], control });
      const admin = rc.admin();
      const c = rc.client("t1");
      await c.enqueue({ command: "X", payload: payload("x") });
      const done = (await admin.assignCommand({ command: "X", shard: "b" })).migrations[0]!.id;
      await c.enqueueBatch({ tasks: [{ command: "Y" }, { command: "Y" }] });
      expect((await c.lease({ commands: ["Y"], maxTasks: 1 })).tasks).toHaveLength(1);
      const running = (await admin.assignCommand({ command: "Y", shard: "c" })).migrations[0]!.id;
      const state = async (id: string) => (await admin.getMigration({ id })).migration!.state;
      await within(
        10_000,
        async () => (await state(done)) === MigrationState.MIGRATION_STATE_COMPLETED,
      );
      await within(
        10_000,
        async () => (await state(running)) === MigrationState.MIGRATION_STATE_DRAINING,
      );

      await control.kill();
      const unavailable = expect.objectContaining({
        code: Status.UNAVAILABLE,
        details: expect.stringMatching(/^the control store did not answer .*retry$/),
      });
      await expect(admin.getMigration({ id: done })).rejects.toEqual(unavailable);
      await expect(admin.listMigrations({ includeFinished: true })).rejects.toEqual(unavailable);
      await expect(admin.verifyMigration({ id: done })).rejects.toEqual(unavailable);
      // what is running is in the router's map: counted on both shards all the same
      const res = await admin.verifyMigration({ id: running });
      expect(res.source).toMatchObject({ shard: "a", answered: true, routed: true });
      expect(res.source!.counts!.leased).toBe(1);
      expect(res.target!.counts!.ready).toBe(1);
      expect(res.consistent).toBe(false);
      expect(res.problems).toEqual([
        expect.stringMatching(
          /^the control store did not answer, so the check used this router's cached map/,
        ),
      ]);
      expect((await admin.listMigrations({})).migrations.map((m) => m.id)).toEqual([running]);
    } finally {
      await control.restart();
      await rc?.close();
      await control.stop();
    }
  }, 60_000);
});
