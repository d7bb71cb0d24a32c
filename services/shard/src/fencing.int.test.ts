import { ClientError, createServer, Metadata, Status } from "nice-grpc";
import { Redis } from "ioredis";
import { internal, Task, TaskState } from "@codeq/proto";
import { RedisMapSource, shardMapKey, type ShardMapDraft } from "@codeq/shardmap";
import { freePort, RedisServer, startRelay, withUnimplemented } from "@codeq/testing";
import { shardFixture, type ShardFixture } from "./test/fixture";

const CHANGE = { actor: "test", action: "test", summary: "" };

/** Shards a and b; a is the default, X belongs to b, and tenant vip's OWNED to b. */
function draft(overrides: Partial<ShardMapDraft> = {}): ShardMapDraft {
  return {
    shards: {
      a: { endpoint: "127.0.0.1:1", state: "active" },
      b: { endpoint: "127.0.0.1:2", state: "active" },
    },
    defaultShard: "a",
    commands: { X: "b" },
    tenants: { "OWNED/vip": "b" },
    migrations: [],
    ...overrides,
  };
}

/** Runs a call expected to fail; returns its error and the trailers it carried. */
async function refused(
  call: (options: { onTrailer(t: Metadata): void }) => Promise<unknown>,
): Promise<{ error: ClientError; trailer: Metadata | undefined }> {
  let trailer: Metadata | undefined;
  const error = await call({ onTrailer: (t) => (trailer = t) }).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof ClientError)) throw new Error(`expected a ClientError, got ${error}`);
  return { error, trailer };
}

/** Polls `check` until it holds; fails after `ms`. */
async function within(ms: number, check: () => Promise<boolean>): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > ms) throw new Error(`not reached within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - started;
}

describe("enqueue fencing by the shard map", () => {
  let server: RedisServer;
  let counter = 0;
  const cleanups: Array<() => Promise<unknown>> = [];
  beforeAll(async () => (server = await RedisServer.start()));
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()!();
  });
  afterAll(() => server.stop());

  /** A control store prefix holding `first` as version 1, and a shard worker "a" following it. */
  async function mapped(
    first: ShardMapDraft = draft(),
    extra: Record<string, unknown> = {},
    control: RedisServer = server,
  ): Promise<{ fx: ShardFixture; source: RedisMapSource; controlPrefix: string }> {
    const controlPrefix = `${control.keyPrefix}-ctl-${++counter}`;
    const source = new RedisMapSource({ url: control.url, prefix: controlPrefix });
    cleanups.push(() => source.close());
    await source.compareAndSet(0, first, CHANGE);
    const fx = await shardFixture({ controlUrl: control.url, controlPrefix, ...extra }, server);
    cleanups.push(() => fx.close());
    return { fx, source, controlPrefix };
  }

  it("refuses an Enqueue of another shard's queue with UNAVAILABLE, the version and the owner, storing nothing", async () => {
    const { fx } = await mapped();
    expect(fx.worker.mapVersion()).toBe(1);
    const c = fx.client("t");
    const { error, trailer } = await refused((o) => c.enqueue({ command: "X" }, o));
    expect(error.code).toBe(Status.UNAVAILABLE);
    expect(error.details).toBe(
      "shard a does not own queue X for tenant t under shard map version 1 (owner: b); refresh the shard map and retry",
    );
    expect(trailer?.get("x-codeq-map-version")).toBe("1");
    expect(trailer?.get("x-codeq-owner")).toBe("b");
    expect((await c.queueStats({ command: "X" })).total).toMatchObject({ ready: 0, scheduled: 0 });
    expect(await fx.worker.engine.queues("X")).toEqual([]);
  });

  it("refuses a whole EnqueueBatch when one queue is not owned, and a tenant override counts", async () => {
    const { fx } = await mapped();
    const c = fx.client("t");
    const { error, trailer } = await refused((o) =>
      c.enqueueBatch(
        { tasks: [{ command: "OWNED" }, { command: "X" }, { command: "OWNED" }] as never },
        o,
      ),
    );
    expect(error.code).toBe(Status.UNAVAILABLE);
    expect(error.details).toMatch(/does not own queue X for tenant t .*\(owner: b\)/);
    expect(trailer?.get("x-codeq-owner")).toBe("b");
    expect((await c.queueStats({ command: "OWNED" })).total?.ready).toBe(0);

    const vip = fx.client("vip");
    const override = await refused((o) => vip.enqueue({ command: "OWNED" }, o));
    expect(override.error.details).toMatch(/queue OWNED for tenant vip .*\(owner: b\)/);
    expect(await fx.worker.engine.queues()).toEqual([]);
  });

  it("stores what it owns", async () => {
    const { fx } = await mapped();
    const c = fx.client("t");
    expect(await c.enqueue({ command: "OWNED" })).toMatchObject({
      duplicate: false,
      state: TaskState.TASK_STATE_READY,
    });
    const batch = await c.enqueueBatch({
      tasks: [{ command: "OWNED" }, { command: "OTHER" }] as never,
    });
    expect(batch.results.map((r) => r.status?.code)).toEqual([Status.OK, Status.OK]);
    expect((await c.queueStats({ command: "OWNED" })).total?.ready).toBe(2);
  });

  it("takes a queue moved to it within a second of the map change", async () => {
    const { fx, source } = await mapped();
    const c = fx.client("t");
    await refused((o) => c.enqueue({ command: "X" }, o));
    await source.compareAndSet(1, draft({ commands: { X: "a" } }), CHANGE);
    await within(1_000, () =>
      c.enqueue({ command: "X" }).then(
        () => true,
        () => false,
      ),
    );
    expect(fx.worker.mapVersion()).toBe(2);
    // and gives one away just as fast
    await source.compareAndSet(2, draft({ commands: { OWNED: "b" } }), CHANGE);
    await within(1_000, () =>
      c.enqueue({ command: "OWNED" }).then(
        () => false,
        () => true,
      ),
    );
    const { trailer } = await refused((o) => c.enqueue({ command: "OWNED" }, o));
    expect(trailer?.get("x-codeq-map-version")).toBe("3");
  });

  it("re-reads the map at once when the caller routed by a newer version", async () => {
    // polling off, and the change below is written without an announcement
    const { fx, source, controlPrefix } = await mapped(draft(), { mapPollMs: 3_600_000 });
    const current = (await source.get())!;
    const redis = new Redis(server.url, { protocol: 2 });
    cleanups.push(() => redis.quit());
    await redis.set(
      shardMapKey(controlPrefix),
      JSON.stringify({ ...current, version: 2, commands: { X: "a" } }),
    );
    const c = fx.client("t");
    await refused((o) => c.enqueue({ command: "X" }, o));
    expect(fx.worker.mapVersion()).toBe(1);
    const routedBy = new Metadata({ "x-codeq-tenant": "t", "x-codeq-map-version": "2" });
    expect(await c.enqueue({ command: "X" }, { metadata: routedBy })).toMatchObject({
      state: TaskState.TASK_STATE_READY,
    });
    expect(fx.worker.mapVersion()).toBe(2);
  });

  it("refuses a whole keyed EnqueueBatch, with the version and the owner, when a move's abort ends while the source is asked for the keys", async () => {
    // b answers the question about keys only once the test lets it
    let reached!: () => void;
    let answer!: () => void;
    const asked = new Promise<void>((r) => (reached = r));
    const answered = new Promise<void>((r) => (answer = r));
    const b = createServer();
    b.add(
      internal.ShardServiceDefinition,
      withUnimplemented(internal.ShardServiceDefinition, {
        lookupIdempotencyKeys: async () => {
          reached();
          await answered;
          return { bindings: [] };
        },
      }),
    );
    const bAddress = `127.0.0.1:${await freePort()}`;
    await b.listen(bAddress);
    cleanups.push(() => b.shutdown());
    const shards = {
      a: { endpoint: "127.0.0.1:1", state: "active" as const },
      b: { endpoint: bAddress, state: "active" as const },
    };
    // X is moving from b onto a: a asks b about the keys of an enqueue of X
    const move = { id: "m1", command: "X", from: "b", to: "a", state: "copying" as const };
    const { fx, source } = await mapped(
      draft({
        shards,
        commands: { X: "a" },
        migrations: [{ ...move, startedAtMs: Date.now(), hadOwnRoute: true }],
      }),
    );
    const c = fx.client("t");
    const call = refused((o) =>
      c.enqueueBatch(
        { tasks: [{ command: "OWNED" }, { command: "X", idempotencyKey: "k1" }] as never },
        o,
      ),
    );
    await asked;
    // meanwhile the move's abort ends: X is b's again, and a holds that map
    await source.compareAndSet(1, draft({ shards }), CHANGE);
    await within(1_000, async () => fx.worker.mapVersion() === 2);
    answer();
    const { error, trailer } = await call;
    expect(error.code).toBe(Status.UNAVAILABLE);
    expect(error.details).toMatch(
      /does not own queue X for tenant t under shard map version 2 \(owner: b\)/,
    );
    expect(trailer?.get("x-codeq-map-version")).toBe("2");
    expect(trailer?.get("x-codeq-owner")).toBe("b");
    // nothing stored, the part a owns neither: the router sends the call again whole
    expect(await fx.worker.engine.queues()).toEqual([]);
  });

  it("answers a refused EnqueueStream batch per item and goes on", async () => {
    const { fx } = await mapped();
    const c = fx.client("t");
    async function* batches() {
      yield { seq: 1, tasks: [{ command: "X" }, { command: "OWNED" }] as never };
      yield { seq: 2, tasks: [{ command: "OWNED" }] as never };
    }
    const answers = new Map<number, Array<[number, string]>>();
    for await (const res of c.enqueueStream(batches()))
      answers.set(
        res.seq,
        res.results.map((r) => [r.status!.code, r.status!.message]),
      );
    const refusal =
      "shard a does not own queue X for tenant t under shard map version 1 (owner: b); refresh the shard map and retry";
    expect(answers.get(1)).toEqual([
      [Status.UNAVAILABLE, refusal],
      [Status.UNAVAILABLE, refusal],
    ]);
    expect(answers.get(2)).toEqual([[Status.OK, ""]]);
    expect((await c.queueStats({ command: "OWNED" })).total?.ready).toBe(1);
  });

  it("keeps fencing by the last map while the control store is down, and says so until it returns", async () => {
    const control = await RedisServer.start({ persistent: true, spawnOnly: true });
    cleanups.push(() => control.stop());
    const { fx } = await mapped(draft(), { mapPollMs: 100 }, control);
    const c = fx.client("t");
    const metric = async (name: string) =>
      (await fx.worker.metrics.registry.getSingleMetric(name)!.get()).values[0]?.value;
    expect(await metric("codeq_shard_map_version")).toBe(1);
    expect(await metric("codeq_shard_map_stale")).toBe(0);
    await within(2_000, async () => (await metric("codeq_shard_map_announcements")) === 1);
    await control.kill();
    await within(5_000, async () => (await metric("codeq_shard_map_stale")) === 1);
    expect(await metric("codeq_shard_map_announcements")).toBe(0);
    expect(fx.worker.map?.status().stale).toBe(true);
    expect((await c.enqueue({ command: "OWNED" })).state).toBe(TaskState.TASK_STATE_READY);
    const { error, trailer } = await refused((o) => c.enqueue({ command: "X" }, o));
    expect(error.code).toBe(Status.UNAVAILABLE);
    expect(trailer?.get("x-codeq-map-version")).toBe("1");
    await control.restart();
    await within(5_000, async () => (await metric("codeq_shard_map_stale")) === 0);
    await within(5_000, async () => (await metric("codeq_shard_map_announcements")) === 1);
  });

  it("a fresh depth read waits for an enqueue admitted before it whose script the store had lost (NOSCRIPT)", async () => {
    const relay = await startRelay(server.host, server.port);
    cleanups.push(() => relay.close());
    const { fx } = await mapped(draft(), { redisUrl: `redis://127.0.0.1:${relay.port}` });
    const c = fx.client("t");
    // the enqueue script has gone over the worker's connection: the next goes by its hash
    await c.enqueue({ command: "FIRST" });
    const flush = new Redis(server.url);
    cleanups.push(() => flush.quit());
    await flush.script("FLUSH");
    // the store's NOSCRIPT answer comes late: ioredis sends the script itself only then,
    // behind whatever the worker sent meanwhile
    const held = relay.holdReplies((reply) => reply.includes("NOSCRIPT"));
    const stored = c.enqueue({ command: "LATE" });
    await within(5_000, async () => held.holding);
    const status = fx.shardClient().getShardStatus({ fresh: true });
    await new Promise((r) => setTimeout(r, 300));
    held.release();
    expect((await stored).state).toBe(TaskState.TASK_STATE_READY);
    expect(await status).toMatchObject({
      freshRead: true,
      queueDepth: 2,
      commands: ["FIRST", "LATE"],
    });
  });

  it("HeldTasks waits for an import admitted before the abort reached the shard, whose script the store had lost (NOSCRIPT)", async () => {
    const relay = await startRelay(server.host, server.port);
    cleanups.push(() => relay.close());
    const moving = {
      id: "m1",
      command: "X",
      from: "b",
      to: "a",
      state: "copying" as const,
      startedAtMs: Date.now(),
    };
    const { fx, source } = await mapped(draft({ commands: { X: "a" }, migrations: [moving] }), {
      redisUrl: `redis://127.0.0.1:${relay.port}`,
    });
    const shard = fx.shardClient();
    const moved = (id: string) => ({
      task: {
        ...Task.fromPartial({ id, command: "X", tenant: "t", payload: Buffer.from(id) }),
        state: TaskState.TASK_STATE_READY,
        maxAttempts: 5,
        runAtMs: Date.now(),
      },
      idempotencyExpiresAtMs: 0,
      leaseSeq: 1,
      doneAtMs: 0,
    });
    const importing = (id: string) =>
      shard.importTasks({ command: "X", tenant: "t", migrationId: "m1", tasks: [moved(id)] });
    const [first, late] = ["01JD0000000000000000000001", "01JD0000000000000000000002"];
    // the import script has gone over the worker's connection: the next goes by its hash
    await importing(first!);
    const flush = new Redis(server.url);
    cleanups.push(() => flush.quit());
    await flush.script("FLUSH");
    const held = relay.holdReplies((reply) => reply.includes("NOSCRIPT"));
    const imported = importing(late!);
    await within(5_000, async () => held.holding);
    // the move is aborted; once the worker has that, it takes no import of it, and the
    // source asks which of its batch landed here
    await source.compareAndSet(
      1,
      draft({ commands: { X: "b" }, migrations: [{ ...moving, state: "aborting" }] }),
      CHANGE,
    );
    await within(2_000, async () => fx.worker.map!.current().version === 2);
    const answer = shard.heldTasks({
      command: "X",
      tenant: "t",
      migrationId: "m1",
      taskIds: [late!],
    });
    await new Promise((r) => setTimeout(r, 300));
    held.release();
    expect((await imported).imported).toEqual([late]);
    expect((await answer).held).toEqual([late]);
  });

  it("a standalone worker (no controlUrl) holds no map and accepts every queue", async () => {
    const fx = await shardFixture({}, server);
    cleanups.push(() => fx.close());
    expect(fx.worker.map).toBeUndefined();
    expect(fx.worker.mapVersion()).toBe(0);
    const res = await fx.client("vip").enqueueBatch({
      tasks: [{ command: "X" }, { command: "OWNED" }] as never,
    });
    expect(res.results.map((r) => r.status?.code)).toEqual([Status.OK, Status.OK]);
  });
});
