import { setTimeout as sleep } from "node:timers/promises";
import {
  ClientError,
  createChannel,
  createClient,
  createServer,
  Metadata,
  ServerError,
  Status,
} from "nice-grpc";
import {
  internal,
  LeaseStreamRequest,
  QueueServiceDefinition,
  type LeaseStreamResponse,
} from "@codeq/proto";
import { Channel } from "@codeq/server-kit";
import { FENCE_REFRESH_MS } from "@codeq/shardmap";
import { freePort, steady, withUnimplemented } from "@codeq/testing";
import { MAP_VERSION_TRAILER, OWNER_TRAILER } from "@codeq/wire";
import { FanInSession } from "./fan-in";
import { StreamSettlements } from "./fan-in-settle";
import {
  clusterPerTest,
  enqueueLarge,
  slowStream,
  Stream,
  within,
  type RouterCluster,
} from "./test/cluster";
import { pb, rawService } from "./test/fuzz-protobuf";

const payload = (s: string) => Buffer.from(s);

// the migrations these tests write are stand-ins: no mover acts on them
const cluster = clusterPerTest({ commands: { X: "a", Y: "b" }, shard: { mover: false } });
let rc: RouterCluster;
beforeEach(() => (rc = cluster()));

const stats = async (shard: string, command: string, tenant = "t1") =>
  rc.workers.get(shard)!.engine.stats({ command, tenant });

async function expectCode(p: Promise<unknown>, code: Status): Promise<ClientError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ClientError);
  expect((err as ClientError).code).toBe(code);
  return err as ClientError;
}

type QueueImpl = Parameters<typeof withUnimplemented<typeof QueueServiceDefinition>>[1];
type ShardImpl = Parameters<typeof withUnimplemented<typeof internal.ShardServiceDefinition>>[1];

/**
 * A stand-in shard worker "z" with the methods given (the others UNIMPLEMENTED), put in
 * the map with `commands` routed to it; `body` runs while it serves, then it stops.
 */
async function withStandIn(
  impl: { queue?: QueueImpl; shard?: ShardImpl },
  commands: readonly string[],
  body: () => Promise<void>,
): Promise<void> {
  const z = createServer();
  z.add(QueueServiceDefinition, withUnimplemented(QueueServiceDefinition, impl.queue ?? {}));
  z.add(
    internal.ShardServiceDefinition,
    withUnimplemented(internal.ShardServiceDefinition, impl.shard ?? {}),
  );
  const address = `127.0.0.1:${await freePort()}`;
  await z.listen(address);
  try {
    await rc.change((m) => ({
      ...m,
      shards: { ...m.shards, z: { endpoint: address, state: "active" } },
      commands: { ...m.commands, ...Object.fromEntries(commands.map((c) => [c, "z"])) },
    }));
    await within(2_000, () => rc.router.routing.pool.has("z"));
    for (const c of commands)
      await within(2_000, () => rc.router.routing.currentShard(c, "t1") === "z");
    await body();
  } finally {
    z.forceShutdown();
  }
}

describe("router forwarding", () => {
  test("Enqueue goes to the current shard of the queue", async () => {
    const c = rc.client("t1");
    await c.enqueue({ command: "X", payload: payload("x") });
    await c.enqueue({ command: "Y", payload: payload("y") });
    await c.enqueue({ command: "Z", payload: payload("z") }); // default shard a
    expect((await stats("a", "X")).ready).toBe(1);
    expect((await stats("b", "Y")).ready).toBe(1);
    expect((await stats("a", "Z")).ready).toBe(1);
    expect((await stats("b", "X")).ready).toBe(0);
  });

  test("EnqueueBatch is split per shard and answered in the caller's order", async () => {
    const c = rc.client("t1");
    const commands = ["X", "Y", "Y", "X", "Z", "Y"];
    const res = await c.enqueueBatch({
      tasks: commands.map((command, i) => ({ command, payload: payload(String(i)) })),
    });
    expect(res.results.map((r) => r.status?.code)).toEqual(commands.map(() => 0));
    // each id is the task the caller sent at that index
    for (const [i, r] of res.results.entries()) {
      const shard = commands[i] === "Y" ? "b" : "a";
      const task = await rc.workers
        .get(shard)!
        .engine.getTask({ command: commands[i]!, tenant: "t1" }, r.taskId);
      expect(Buffer.from(task!.payload).toString()).toBe(String(i));
    }
  });

  test("a batch whose bytes the decoder refuses is INVALID_ARGUMENT, worded alike, nothing stored", async () => {
    // the router reads only the commands; the tasks decode where they are read: on the
    // shard for a batch of one shard, in the router for one it splits
    const raw = createClient(
      rawService("codeq.v1.QueueService", {
        EnqueueBatch: { requestStream: false, responseStream: false },
      }),
      createChannel(`127.0.0.1:${rc.router.port}`),
      { "*": { metadata: new Metadata({ "x-codeq-tenant": "t1" }) } },
    ) as unknown as { EnqueueBatch(request: Uint8Array): Promise<Buffer> };
    // delay_ms (field 4) past 2^53
    const task = (command: string) =>
      pb.bytes(1, Buffer.concat([pb.bytes(1, command), pb.varint(4, 2n ** 60n)]));
    for (const commands of [
      ["X", "X"],
      ["X", "Y"],
    ]) {
      const err = await expectCode(
        raw.EnqueueBatch(Buffer.concat(commands.map(task))),
        Status.INVALID_ARGUMENT,
      );
      expect(err.details).toMatch(/^the request is not a valid message of this method: /);
    }
    expect(await stats("a", "X")).toMatchObject({ ready: 0, scheduled: 0 });
    expect(await stats("b", "Y")).toMatchObject({ ready: 0, scheduled: 0 });
  });

  test("an invalid item fails the whole batch before any shard stores anything", async () => {
    const c = rc.client("t1");
    const err = await expectCode(
      c.enqueueBatch({
        tasks: [
          { command: "X", payload: payload("ok") },
          { command: "Y", payload: payload("ok") },
          { command: "Y", priority: 42 },
        ],
      }),
      Status.INVALID_ARGUMENT,
    );
    expect(err.details).toContain("tasks[2]");
    expect((await stats("a", "X")).ready).toBe(0);
    expect((await stats("b", "Y")).ready).toBe(0);
  });

  test("Lease takes from every shard of the queues; Ack/Nack/Extend follow the token's shard", async () => {
    const c = rc.client("t1");
    await c.enqueueBatch({
      tasks: [
        { command: "X", payload: payload("1") },
        { command: "Y", payload: payload("2") },
      ],
    });
    const got = await c.lease({ commands: ["X", "Y"], maxTasks: 10 });
    expect(got.tasks.map((t) => t.task!.shard).sort()).toEqual(["a", "b"]);
    const ext = await c.extend({
      items: got.tasks.map((t) => ({ leaseToken: t.leaseToken, leaseDurationMs: 60_000 })),
    });
    expect(ext.results.map((r) => r.status?.code)).toEqual([0, 0]);
    const acked = await c.ack({
      items: [...got.tasks.map((t) => ({ leaseToken: t.leaseToken })), { leaseToken: "junk" }],
    });
    expect(acked.results.map((r) => r.code)).toEqual([0, 0, Status.NOT_FOUND]);
    expect((await stats("a", "X")).completed).toBe(1);
    expect((await stats("b", "Y")).completed).toBe(1);
  });

  test("Lease with max_tasks never returns more than asked across shards", async () => {
    const c = rc.client("t1");
    await c.enqueueBatch({
      tasks: [..."XXXXYYYY"].map((command) => ({ command, payload: payload(command) })),
    });
    const got = await c.lease({ commands: ["X", "Y"], maxTasks: 3 });
    expect(got.tasks.length).toBeLessThanOrEqual(3);
    expect(got.tasks.length).toBeGreaterThan(0);
    const one = await c.lease({ commands: ["X", "Y"], maxTasks: 1 });
    expect(one.tasks).toHaveLength(1);
  });

  test("a Lease whose caller left while a slower shard was asked gives back what the others leased", async () => {
    await rc.client("t1").enqueueBatch({
      tasks: ["X", "Y"].map((command) => ({ command, payload: payload(command) })),
    });
    // shard b answers late: the caller gives up while the router waits for it
    const engineB = rc.workers.get("b")!.engine;
    const lease = engineB.lease.bind(engineB);
    let leasedOnB!: (n: number) => void;
    const tookOnB = new Promise<number>((r) => (leasedOnB = r));
    engineB.lease = async (...args) => {
      await new Promise((r) => setTimeout(r, 1_500));
      const got = await lease(...args);
      if (args[0].command === "Y") leasedOnB(got.length); // b is asked for X too
      return got;
    };
    try {
      const leaving = rc
        .client("t1")
        .lease({ commands: ["X", "Y"], maxTasks: 10 }, { signal: AbortSignal.timeout(300) });
      await expect(leaving).rejects.toThrow(/abort/i);
      // what shard a leased for the caller that left is ready again at once (the router
      // stops waiting for the slow shard when its caller leaves), not when it expires
      await within(1_000, async () => (await stats("a", "X")).ready === 1);
      // and what b leased, answered after the caller left, goes back as it comes
      expect(await tookOnB).toBe(1);
      await within(2_000, async () => (await stats("b", "Y")).ready === 1);
      expect(await stats("b", "Y")).toMatchObject({ ready: 1, leased: 0 });
    } finally {
      engineB.lease = lease;
    }
  });

  test("a Lease for fewer tasks than there are shards finds them on whichever shard has them", async () => {
    await rc.client("t1").enqueueBatch({
      tasks: [1, 2, 3].map((n) => ({ command: "X", payload: payload(`x${n}`) })),
    });
    // X is on a, Y on b (empty): a call whose one task the router first asks of b
    // must still get a's, not wait on b and come back empty
    for (let i = 0; i < 3; i++) {
      const got = await rc.client("t1").lease({ commands: ["X", "Y"], maxTasks: 1, waitMs: 500 });
      expect(got.tasks.map((t) => t.task!.shard)).toEqual(["a"]);
    }
  });

  test("a Lease for fewer tasks than shards still finds them when the shard given the share is down", async () => {
    await rc.client("t1").enqueueBatch({
      tasks: [1, 2, 3, 4].map((n) => ({ command: "X", payload: payload(`x${n}`) })),
    });
    await rc.stopShard("b"); // Y's shard: every other call gives b the one task's share
    for (let i = 0; i < 4; i++) {
      const got = await rc.client("t1").lease({ commands: ["X", "Y"], maxTasks: 1 });
      expect(got.tasks.map((t) => t.task!.shard)).toEqual(["a"]);
    }
    // with a's tasks gone and b down, no shard has anything: an empty answer, since a answered
    expect((await rc.client("t1").lease({ commands: ["X", "Y"], maxTasks: 1 })).tasks).toEqual([]);
  });

  test("a long-poll Lease through the router is woken by an enqueue on any shard", async () => {
    const c = rc.client("t1");
    const waiting = c.lease({ commands: ["X", "Y"], maxTasks: 5, waitMs: 5_000 });
    await new Promise((r) => setTimeout(r, 200));
    const started = Date.now();
    await c.enqueue({ command: "Y", payload: payload("late") });
    const got = await waiting;
    expect(got.tasks).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  test("QueueStats sums the shards and names the ones that did not answer", async () => {
    await rc.change((m) => ({
      ...m,
      migrations: [
        { id: "m1", command: "X", from: "b", to: "a", state: "copying", startedAtMs: Date.now() },
      ],
    }));
    await within(2_000, () => rc.router.routing.map.migrations.length === 1);
    // a task of X on b (stored before the move) and one on a
    await rc.workers
      .get("b")!
      .engine.enqueue({ command: "X", tenant: "t1" }, [{ payload: payload("old") }]);
    const c = rc.client("t1");
    await c.enqueue({ command: "X", payload: payload("new") });
    const s = await c.queueStats({ command: "X" });
    expect(s.total!.ready).toBe(2);
    expect(s.shards.map((x) => x.shard).sort()).toEqual(["a", "b"]);
    expect(s.unavailableShards).toEqual([]);
    await rc.stopShard("b");
    const partial = await c.queueStats({ command: "X" });
    expect(partial.total!.ready).toBe(1);
    expect(partial.unavailableShards).toEqual(["b"]);
  });

  /** `n` dead tasks of X (tenant t1) on `shard`, put there by its engine; their ids. */
  async function deadOn(shard: string, n: number): Promise<string[]> {
    const queue = { command: "X", tenant: "t1" };
    const engine = rc.workers.get(shard)!.engine;
    await engine.enqueue(
      queue,
      Array.from({ length: n }, () => ({})),
    );
    const leased = await engine.lease(queue, { max: n, leaseMs: 30_000 });
    await engine.nack(leased.map((d) => ({ token: d.token, deadLetter: true })));
    return leased.map((d) => d.task.id);
  }

  test("ListDead goes on where it stopped when the queue's shards change between pages", async () => {
    await startMovingX(); // X's shards are [a, b]
    const dead = [...(await deadOn("a", 1)), ...(await deadOn("b", 3))];
    const admin = rc.client("t1", "admin");
    const first = await admin.listDead({ command: "X", pageSize: 2 });
    expect(first.tasks).toHaveLength(2); // a's, then one of b's
    // the move ends: X's only shard is b now
    await rc.change((m) => ({ ...m, migrations: [] }));
    await within(2_000, () => rc.router.routing.map.migrations.length === 0);
    const rest = await admin.listDead({
      command: "X",
      pageSize: 10,
      pageToken: first.nextPageToken,
    });
    expect(rest.nextPageToken).toBe("");
    expect([...first.tasks, ...rest.tasks].map((t) => t.id).sort()).toEqual([...dead].sort());
    // a token that is not one the router issued is refused, and says what to do
    const err = await expectCode(
      admin.listDead({ command: "X", pageToken: "bm90IGEgdG9rZW4" }),
      Status.INVALID_ARGUMENT,
    );
    expect(err.details).toMatch(/start again without it/);
  });

  test("PurgeDead and RedriveDead count as remaining the dead tasks of shards their budget did not reach", async () => {
    await startMovingX(); // X's shards are [a, b]
    await deadOn("a", 2);
    await deadOn("b", 2);
    const admin = rc.client("t1", "admin");
    expect(await admin.purgeDead({ command: "X", maxTasks: 2 })).toMatchObject({
      purged: 2,
      remaining: 2,
    });
    expect(await admin.redriveDead({ command: "X", maxTasks: 1 })).toMatchObject({
      redriven: 1,
      remaining: 1,
    });
  });

  test("GetTask finds a task on whichever shard of the queue holds it", async () => {
    const c = rc.client("t1");
    const { taskId } = await c.enqueue({ command: "Y", payload: payload("y") });
    const got = await c.getTask({ command: "Y", taskId });
    expect(got.task!.shard).toBe("b");
    await expectCode(
      c.getTask({ command: "Y", taskId: "01ARZ3NDEKTSV4RRFFQ69G5FAV" }),
      Status.NOT_FOUND,
    );
    // another tenant's task is NOT_FOUND too
    await expectCode(rc.client("t2").getTask({ command: "Y", taskId }), Status.NOT_FOUND);
  });

  test("a map change reaches the router through the announcement", async () => {
    await rc.change((m) => ({ ...m, commands: { ...m.commands, X: "b" } }));
    const took = await within(1_000, () => rc.router.routing.currentShard("X", "t1") === "b");
    expect(took).toBeLessThan(1_000);
    await rc.client("t1").enqueue({ command: "X", payload: payload("moved") });
    expect((await stats("b", "X")).ready).toBe(1);
  });

  test("a shard that does not own the queue refuses; the router refreshes and retries once", async () => {
    // the router's map is made stale: its key is rewritten without an announcement
    const map = (await rc.source.get())!;
    await rc.change((m) => ({ ...m, commands: { ...m.commands, X: "b" } }));
    await within(2_000, () => rc.router.routing.currentShard("X", "t1") === "b");
    // put the router back on the old map (as if the announcement was lost)
    (rc.router.routing.cache as unknown as { map: typeof map }).map = map;
    expect(rc.router.routing.currentShard("X", "t1")).toBe("a");
    await within(2_000, () => rc.workers.get("a")!.mapVersion() === map.version + 1);
    const res = await rc.client("t1").enqueue({ command: "X", payload: payload("fenced") });
    expect(res.taskId).toHaveLength(26);
    expect((await stats("b", "X")).ready).toBe(1);
    expect((await stats("a", "X")).ready).toBe(0);
  });

  test("a batch a shard refuses again after the map refresh fails UNAVAILABLE: retried once, as Enqueue", async () => {
    // a stand-in shard that refuses every enqueue as not its own, whatever the map says
    let calls = 0;
    const enqueueBatch: QueueImpl["enqueueBatch"] = async (_req, ctx) => {
      calls++;
      ctx.trailer.set(MAP_VERSION_TRAILER, "1");
      ctx.trailer.set(OWNER_TRAILER, "a");
      throw new ServerError(Status.UNAVAILABLE, "shard z does not own queue FENCED/t1");
    };
    await withStandIn({ queue: { enqueueBatch } }, ["FENCED"], async () => {
      // larger than a lane's batches: an EnqueueBatch call of its own
      const res = await rc.client("t1").enqueueBatch({
        tasks: [{ command: "FENCED", payload: Buffer.alloc(300 * 1024, 1) }],
      });
      expect(res.results[0]!.status).toMatchObject({
        code: Status.UNAVAILABLE,
        message: expect.stringContaining("(after a map refresh)"),
      });
      expect(calls).toBe(2);
    });
  });

  test("a fencing refusal while the control store does not answer is answered within FENCE_REFRESH_MS, not the read's timeout", async () => {
    // a stand-in shard that refuses every enqueue as not its own, under a newer map
    const enqueueBatch: QueueImpl["enqueueBatch"] = async (_req, ctx) => {
      ctx.trailer.set(MAP_VERSION_TRAILER, "999");
      ctx.trailer.set(OWNER_TRAILER, "a");
      throw new ServerError(Status.UNAVAILABLE, "shard z does not own queue FENCED/t1");
    };
    const source = (rc.router.routing.cache as unknown as { source: { get: () => unknown } })
      .source;
    const get = source.get;
    try {
      await withStandIn({ queue: { enqueueBatch } }, ["FENCED"], async () => {
        // the control store stops answering the router's reads (5 s until one times out)
        source.get = () => new Promise(() => {});
        const started = Date.now();
        // larger than a lane's batches: an EnqueueBatch call of its own
        const res = await rc.client("t1").enqueueBatch({
          tasks: [{ command: "FENCED", payload: Buffer.alloc(300 * 1024, 1) }],
        });
        expect(res.results[0]!.status).toMatchObject({
          code: Status.UNAVAILABLE,
          message: expect.stringContaining("(after a map refresh)"),
        });
        expect(Date.now() - started).toBeLessThan(FENCE_REFRESH_MS + 2_000);
      });
    } finally {
      source.get = get;
    }
  });

  test("acks on two shards, one refusing its part for the caller's sake: each item says how it went", async () => {
    // a stand-in shard without Forward that refuses every ack as too large
    const queue: QueueImpl = {
      ack: async () => {
        throw new ServerError(Status.RESOURCE_EXHAUSTED, "this part is too large for shard z");
      },
    };
    const shard: ShardImpl = {
      // eslint-disable-next-line require-yield
      forward: async function* () {
        throw new ServerError(Status.UNIMPLEMENTED, "no Forward here");
      },
    };
    await withStandIn({ queue, shard }, [], async () => {
      const c = rc.client("t1");
      await c.enqueue({ command: "X", payload: payload("on a") });
      const [leased] = (await c.lease({ commands: ["X"], maxTasks: 1 })).tasks;
      const res = await c.ack({
        items: [{ leaseToken: leased!.leaseToken }, { leaseToken: "c1~z~not-a-real-token" }],
      });
      expect(res.results.map((r) => r.code)).toEqual([Status.OK, Status.RESOURCE_EXHAUSTED]);
      expect((await stats("a", "X")).leased).toBe(0);
      // every item refused so: the call fails, as on one shard
      await expectCode(c.ack({ items: [{ leaseToken: "c1~z~other" }] }), Status.RESOURCE_EXHAUSTED);
    });
  });

  test("a batch sent as a call of its own states, when retried after a fencing refusal, the map version refreshed", async () => {
    const old = (await rc.source.get())!;
    await rc.change((m) => ({ ...m, commands: { ...m.commands, X: "b" } }));
    await within(2_000, () => rc.workers.get("a")!.mapVersion() === old.version + 1);
    await within(2_000, () => rc.workers.get("b")!.mapVersion() === old.version + 1);
    // the router and b missed the change (lost announcements); a has it
    type Held = { map: typeof old };
    (rc.router.routing.cache as unknown as Held).map = old;
    (rc.workers.get("b")!.map as unknown as Held).map = old;
    // larger than a lane's batches: an EnqueueBatch call of its own
    const big = Buffer.alloc(300 * 1024, 1);
    const res = await rc.client("t1").enqueueBatch({ tasks: [{ command: "X", payload: big }] });
    // a refused, the router refreshed and retried on b stating the new version: b
    // re-read its map rather than refusing by the one it held
    expect(res.results[0]!.status!.code).toBe(Status.OK);
    expect((await stats("b", "X")).ready).toBe(1);
  });

  test("GetShardMap and ListShards report the map, health and breakers", async () => {
    const admin = rc.admin();
    const m = await admin.getShardMap({});
    expect(m.map!.shards.map((s) => s.id)).toEqual(["a", "b"]);
    expect(m.map!.assignments).toEqual([
      { command: "X", tenant: "", shard: "a" },
      { command: "Y", tenant: "", shard: "b" },
    ]);
    expect(m.stale).toBe(false);
    await rc.client("t1").enqueue({ command: "Y", payload: payload("y") });
    await rc.stopShard("a");
    const list = await admin.listShards({});
    const [a, b] = list.shards;
    expect(a!.healthy).toBe(false);
    expect(a!.error).not.toBe("");
    expect(b!.healthy).toBe(true);
    expect(b!.queueDepth).toBe(1);
    expect(b!.mapVersion).toBe(m.map!.version);
    await expectCode(rc.admin("t1").getShardMap({}, {}), Status.OK).catch(() => undefined);
    await expectCode(rc.client("t1").enqueue({ command: "X" }), Status.UNAVAILABLE);
  });

  test("ListShards calls a shard whose depth read is slow healthy, saying the depth was not read", async () => {
    // a stand-in shard worker: its health at once, its depth (a read per queue) too late
    const getShardStatus: ShardImpl["getShardStatus"] = async (req) => {
      if (!req.withoutDepth) await new Promise((r) => setTimeout(r, 10_000));
      return { shard: "z", storeReachable: true, lifecycle: "serving", mapVersion: 1 };
    };
    await withStandIn({ shard: { getShardStatus } }, [], async () => {
      const { shards } = await rc.admin().listShards({});
      const status = shards.find((s) => s.shard?.id === "z")!;
      expect(status).toMatchObject({ healthy: true, queueDepth: 0 });
      expect(status.error).toMatch(/queue depth was not read within/);
    });
  });

  test("Prometheus metrics: RPCs, the map version and every shard's breaker", async () => {
    await rc.client("t1").enqueue({ command: "X", payload: payload("x") });
    const body = await fetch(`http://127.0.0.1:${rc.router.metricsPort}/metrics`).then((r) =>
      r.text(),
    );
    expect(body).toMatch(/codeq_rpc_requests_total\{method="Enqueue",code="OK"\} 1/);
    expect(body).toMatch(new RegExp(`codeq_router_map_version ${rc.router.routing.map.version}`));
    expect(body).toMatch(/codeq_router_map_stale 0/);
    expect(body).toMatch(/codeq_router_map_announcements 1/);
    expect(body).toMatch(/codeq_router_shard_breaker_state\{shard="a"\} 0/);
    expect(body).toMatch(/codeq_router_shard_breaker_state\{shard="b"\} 0/);
    // the map cache's counters: reads served from it, reads of the control store
    const count = (name: string) =>
      Number(new RegExp(`^${name} (\\d+)$`, "m").exec(body)?.[1] ?? NaN);
    expect(count("codeq_router_map_reads_total")).toBeGreaterThan(0);
    expect(count("codeq_router_map_refreshes_total")).toBeGreaterThanOrEqual(1);
    expect(count("codeq_router_map_refresh_errors_total")).toBe(0);
    // and from a shard worker, under its shard
    const shardBody = await rc.workers.get("a")!.metrics.registry.metrics();
    expect(shardBody).toMatch(/codeq_shard_map_refreshes_total\{shard="a"\} [1-9]/);
  });

  test("without the admin role, AdminService is refused", async () => {
    const { createChannel, createClient, Metadata } = await import("nice-grpc");
    const { AdminServiceDefinition } = await import("@codeq/proto");
    const ch = createChannel(`127.0.0.1:${rc.router.port}`);
    const admin = createClient(AdminServiceDefinition, ch, {
      "*": { metadata: new Metadata({ "x-codeq-tenant": "t1" }) },
    });
    await expectCode(admin.getShardMap({}), Status.PERMISSION_DENIED);
    ch.close();
  });
});

/** A LeaseStream through the router holding two tasks of X (on shard a), granted `credits`. */
async function holdingTwoOfX(credits: number): Promise<{ s: Stream; tokens: string[] }> {
  await rc.client("t1").enqueueBatch({
    tasks: [1, 2].map((n) => ({ command: "X", payload: payload(`x${n}`) })),
  });
  const s = new Stream(rc);
  s.send({ subscribe: { commands: ["X"] }, credits });
  await within(2_000, () => s.tasks().length === 2);
  return { s, tokens: s.tasks().map((t) => t.leaseToken) };
}

/**
 * The router's streams to shards take these for shard workers that predate
 * withdraw_credits (their Subscribed does not offer it), as during a rolling upgrade.
 */
function predateWithdraw(): void {
  const proto = FanInSession.prototype as unknown as Record<string, (...a: unknown[]) => void>;
  const onMessage = proto.onMessage!;
  jest.spyOn(proto, "onMessage").mockImplementation(function (
    this: unknown,
    leg: unknown,
    raw: unknown,
  ) {
    onMessage.call(this, leg, raw);
    (leg as { withdrawable: boolean }).withdrawable = false;
  });
}

/** X starts moving a → b (a stand-in migration: no mover runs); resolves once the router routes X to b. */
async function startMovingX(): Promise<void> {
  await rc.change((m) => ({
    ...m,
    commands: { ...m.commands, X: "b" },
    migrations: [
      { id: "m1", command: "X", from: "a", to: "b", state: "copying", startedAtMs: Date.now() },
    ],
  }));
  await within(2_000, () => rc.router.routing.currentShard("X", "t1") === "b");
}

describe("LeaseStream through the router", () => {
  test("fans in from every shard, never more than the credits, acks answered per request", async () => {
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X", "Y"], maxBatch: 10 }, credits: 4 });
    await within(2_000, () => s.received.some((r) => r.subscribed));
    const c = rc.client("t1");
    await c.enqueueBatch({
      tasks: [..."XXXYYY"].map((command) => ({ command, payload: payload(command) })),
    });
    await within(2_000, () => s.tasks().length === 4);
    await new Promise((r) => setTimeout(r, 200));
    expect(s.tasks()).toHaveLength(4); // credits hold the rest back
    const tokens = s.tasks().map((t) => t.leaseToken);
    s.send({ requestId: 7, acks: tokens.map((leaseToken) => ({ leaseToken })), credits: 2 });
    await within(2_000, () => s.settled(7) !== undefined);
    expect(s.settled(7)!.acks.map((a) => a.code)).toEqual([0, 0, 0, 0]);
    await within(2_000, () => s.tasks().length === 6);
    expect(new Set(s.tasks().map((t) => t.task!.shard))).toEqual(new Set(["a", "b"]));
    await s.close();
  });

  test("acks of one shard's tasks are settled on its stream, answered under the client's ids", async () => {
    // the way a message of acks takes: as bytes onto the shard's stream
    const onLeg = jest.spyOn(StreamSettlements.prototype, "settleAcks");
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X"], maxBatch: 10 }, credits: 3 });
    await within(2_000, () => s.received.some((r) => r.subscribed));
    const c = rc.client("t1");
    await c.enqueueBatch({
      tasks: [..."123"].map((p) => ({ command: "X", payload: payload(p) })),
    });
    await within(2_000, () => s.tasks().length === 3);
    const tokens = s.tasks().map((t) => t.leaseToken);
    const acks = tokens.slice(0, 2).map((leaseToken) => ({ leaseToken, result: payload("r") }));
    s.send({ requestId: 2 ** 40, acks, credits: 2 });
    await within(2_000, () => s.settled(2 ** 40) !== undefined);
    expect(s.settled(2 ** 40)!.acks.map((a) => a.code)).toEqual([0, 0]);
    expect(await stats("a", "X")).toMatchObject({ leased: 1, completed: 2 });
    // an ack again, and one with a made-up nonce: answered as the shard answers them
    // in a unary Ack
    const last = tokens[2]!.slice(-1);
    const forged = { leaseToken: tokens[2]!.slice(0, -1) + (last === "a" ? "b" : "a") };
    const unary = await c.ack({ items: [acks[0]!, forged] });
    expect(unary.results[1]!.code).not.toBe(0);
    s.send({ requestId: 9, acks: [acks[0]!, forged] });
    await within(2_000, () => s.settled(9) !== undefined);
    expect(s.settled(9)!.acks).toEqual(unary.results);
    expect(onLeg).toHaveBeenCalledTimes(2);
    // a token naming no shard of the map goes the usual way
    s.send({ requestId: 10, acks: [{ leaseToken: tokens[2]!.replace("c1~a~", "c1~zz~") }] });
    await within(2_000, () => s.settled(10) !== undefined);
    expect(s.settled(10)!.acks.map((a) => a.code)).toEqual([Status.NOT_FOUND]);
    // so does an ack of a shard this stream has no stream to (Y is on b): a unary Ack
    await c.enqueue({ command: "Y", payload: payload("y") });
    const [y] = (await c.lease({ commands: ["Y"], maxTasks: 1 })).tasks;
    s.send({ requestId: 11, acks: [{ leaseToken: y!.leaseToken }] });
    await within(2_000, () => s.settled(11) !== undefined);
    expect(s.settled(11)!.acks.map((a) => a.code)).toEqual([0]);
    expect(await stats("b", "Y")).toMatchObject({ leased: 0, completed: 1 });
    expect(onLeg).toHaveBeenCalledTimes(2);
    onLeg.mockRestore();
    // the credits came back to the shard: a new task is pushed at once
    await c.enqueue({ command: "X", payload: payload("4") });
    await within(2_000, () => s.tasks().length === 4);
    expect(s.failure).toBeUndefined();
    // the shard no longer holds the acked leases for this stream: closing it releases
    // the other two, and nothing else
    await s.close();
    await within(2_000, async () => (await stats("a", "X")).ready === 2);
    expect(await stats("a", "X")).toMatchObject({ leased: 0, completed: 2 });
  });

  test("acks on the stream are settled after the shard's endpoint changes and its old channels close", async () => {
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X"], maxBatch: 10 }, credits: 2 });
    await within(2_000, () => s.received.some((r) => r.subscribed));
    await rc.client("t1").enqueueBatch({
      tasks: [..."12"].map((p) => ({ command: "X", payload: payload(p) })),
    });
    await within(2_000, () => s.tasks().length === 2);
    // a's worker under another name for its address: the router opens new channels
    const old = rc.router.routing.pool.get("a");
    await rc.change((m) => ({
      ...m,
      shards: {
        ...m.shards,
        a: { ...m.shards.a!, endpoint: old.endpoint.replace("127.0.0.1", "localhost") },
      },
    }));
    await within(2_000, () => rc.router.routing.pool.get("a") !== old);
    old.close(); // as the pool does a minute later
    s.send({ requestId: 3, acks: [{ leaseToken: s.tasks()[0]!.leaseToken }] });
    await within(2_000, () => s.settled(3) !== undefined);
    expect(s.settled(3)!.acks.map((a) => a.code)).toEqual([Status.OK]);
    expect(await stats("a", "X")).toMatchObject({ leased: 1, completed: 1 });
    await s.close();
  });

  test("a client that reads slowly holds its shard's pushes back: the shard leases no more", async () => {
    const n = 120;
    const payload = Buffer.alloc(512 * 1024, 1); // 60 MB in all: more than two transports buffer
    const c = rc.client("t1");
    for (let i = 0; i < n; i += 10)
      await c.enqueueBatch({
        tasks: Array.from({ length: 10 }, () => ({ command: "X", payload })),
      });
    const requests = new Channel<LeaseStreamRequest>();
    requests.push(
      LeaseStreamRequest.fromPartial({ subscribe: { commands: ["X"], maxBatch: 1 }, credits: n }),
    );
    const abort = new AbortController();
    const responses = c.leaseStream(requests, { signal: abort.signal })[Symbol.asyncIterator]();
    // the client reads its subscription and two pushes, then stops reading
    for (let i = 0; i < 3; i++) await responses.next();
    const leased = await steady(async () => (await stats("a", "X")).leased, 300, 10_000);
    expect(leased).toBeLessThan(n);
    abort.abort();
    await responses.next().catch(() => undefined);
    requests.close();
    // what never reached the client goes back
    await within(5_000, async () => (await stats("a", "X")).leased === 0);
  });

  test("a client that sends without reading its answers is read no further", async () => {
    const n = 600;
    let pulled = 0;
    // acks of a token naming no shard, 1,000 to a message: each answered by the router
    // itself, at once, with 1,000 statuses (about 70 KB)
    const acks = Array.from({ length: 1_000 }, () => ({
      leaseToken: "c1~zz~X~t1~01JB0000000000000000000000~1~n",
    }));
    async function* requests(): AsyncGenerator<LeaseStreamRequest> {
      yield LeaseStreamRequest.fromPartial({ subscribe: { commands: ["X"] } });
      for (let i = 0; i < n; i++) {
        pulled++;
        yield LeaseStreamRequest.fromPartial({ requestId: i + 1, acks });
      }
      await new Promise(() => undefined); // the client stays
    }
    const abort = new AbortController();
    const responses = rc
      .client("t1")
      .leaseStream(requests(), { signal: abort.signal })
      [Symbol.asyncIterator]();
    await responses.next(); // subscribed; then the client reads no more
    const last = await steady(() => pulled, 300, 10_000);
    // the transport's buffers, the answers queued in the router and a few more: not
    // every request, with its answer piled up in the router
    expect(last).toBeLessThan(n / 2);
    abort.abort();
    await responses.next().catch(() => undefined);
  });

  test("a stream that fails with an ack on its way waits for it, and pushes nothing more that is then released as an attempt", async () => {
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X", "Y"] }, credits: 40 });
    await rc.client("t1").enqueue({ command: "Y", payload: payload("y") });
    await within(2_000, () => s.tasks().length === 1);
    // b answers acks slowly: the ack below is on its way when the stream fails
    const b = rc.workers.get("b")!.engine;
    const ack = b.ack.bind(b);
    b.ack = async (items) => {
      await sleep(800);
      return ack(items);
    };
    s.send({ requestId: 1, acks: [{ leaseToken: s.tasks()[0]!.leaseToken }] });
    await sleep(50);
    s.send({ subscribe: { commands: ["X"] } }); // refused: the stream ends
    await sleep(50);
    // the shard streams' credits are taken back at the end, which waits for the ack:
    // a's tasks stay ready, not leased, given back, leased again and released counted
    await rc.client("t1").enqueueBatch({
      tasks: Array.from({ length: 5 }, () => ({ command: "X", maxAttempts: 1 })),
    });
    await within(5_000, () => s.ended);
    expect(s.failure).toMatchObject({ code: Status.INVALID_ARGUMENT });
    await within(5_000, async () => (await stats("a", "X")).leased === 0);
    expect(await stats("a", "X")).toMatchObject({ ready: 5, dead: 0, leased: 0 });
    // and the ack on its way was waited for: applied, not cut off by the close (the
    // client, its stream failed, does not hear its answer)
    expect(await stats("b", "Y")).toMatchObject({ ready: 0, leased: 0, completed: 1 });
  });

  test("a shard stream that closes while its pushes wait for a slow client takes them out: the shard released them", async () => {
    const n = 96;
    await enqueueLarge(rc, "Y", n);
    const onClosed = jest.spyOn(
      FanInSession.prototype as unknown as { onClosed: () => void },
      "onClosed",
    );
    const onMessage = jest.spyOn(
      FanInSession.prototype as unknown as { onMessage: () => void },
      "onMessage",
    );
    const { s, readOn } = slowStream(rc);
    s.send({ subscribe: { commands: ["Y"], maxBatch: 1 }, credits: n });
    // the client reads nothing: b's pushes wait in the router (16 of them, after what
    // the transports took), and b leases no more
    await within(10_000, () => onMessage.mock.contexts.length > 0);
    const session = onMessage.mock.contexts[0] as { client: { queued: number } };
    await within(10_000, () => session.client.queued === 16);
    const leased = await steady(async () => (await stats("b", "Y")).leased);
    expect(leased).toBeLessThan(n);
    // b stops: its drain runs out, it releases (uncounted) what its stream holds, and
    // the stream closes; the router learns of it though it reads b's stream no further
    // (it did not, before), and what waited for the client is not written to it
    await rc.stopShard("b");
    await within(3_000, () => onClosed.mock.calls.length > 0);
    readOn();
    const received = await steady(() => s.tasks().length);
    // the 16 queued in the router are not among them
    expect(received).toBeLessThanOrEqual(leased - 16);
    // the credits of what was taken out are the client's again: once b is back, the
    // stream delivers up to all the credits the client granted
    await rc.startShard("b");
    await within(8_000, () => s.tasks().length === n);
    await sleep(300);
    expect(s.tasks()).toHaveLength(n);
    expect(s.failure).toBeUndefined();
    await s.close();
  });

  test("closing the client stream releases what it held on every shard at once", async () => {
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X", "Y"] }, credits: 10 });
    await rc.client("t1").enqueueBatch({
      tasks: [
        { command: "X", payload: payload("1") },
        { command: "Y", payload: payload("2") },
      ],
    });
    await within(2_000, () => s.tasks().length === 2);
    await s.close();
    await within(
      2_000,
      async () => (await stats("a", "X")).ready === 1 && (await stats("b", "Y")).ready === 1,
    );
  });

  test("keeps delivering while its command is reassigned to another shard", async () => {
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X"] }, credits: 50 });
    await within(2_000, () => s.received.some((r) => r.subscribed));
    const c = rc.client("t1");
    let sent = 0;
    let requestId = 0;
    const acked = new Set<string>();
    const pump = setInterval(() => {
      const fresh = s.tasks().filter((t) => !acked.has(t.task!.id));
      if (fresh.length === 0) return;
      for (const t of fresh) acked.add(t.task!.id);
      s.send({
        requestId: ++requestId,
        acks: fresh.map((t) => ({ leaseToken: t.leaseToken })),
        credits: fresh.length,
      });
    }, 10);
    const produce = async (n: number) => {
      for (let i = 0; i < n; i++) {
        await c.enqueue({ command: "X", payload: payload(String(sent++)) });
      }
    };
    try {
      await produce(20);
      // the move: X now goes to b while a still drains what it holds
      await startMovingX();
      await produce(20);
      // a's tasks must be out before a leaves the queue's shards (no mover runs here)
      await within(5_000, () => acked.size === sent);
      await rc.change((m) => ({ ...m, migrations: [] }));
      await within(2_000, () => rc.router.routing.map.migrations.length === 0);
      await produce(20);
      await within(5_000, () => acked.size === sent);
      expect(s.failure).toBeUndefined();
      expect(new Set(s.tasks().map((t) => t.task!.shard))).toEqual(new Set(["a", "b"]));
      expect(new Set(s.tasks().map((t) => t.task!.id)).size).toBe(sent);
    } finally {
      clearInterval(pump);
      await s.close();
    }
  });

  test("a shard going down does not end the client's stream; it resumes when the shard returns", async () => {
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X", "Y"] }, credits: 100 });
    await within(2_000, () => s.received.some((r) => r.subscribed));
    await rc.stopShard("b");
    const c = rc.client("t1");
    await c.enqueue({ command: "X", payload: payload("still") });
    await within(2_000, () => s.tasks().length === 1);
    await rc.startShard("b");
    await c.enqueue({ command: "Y", payload: payload("back") });
    await within(8_000, () => s.tasks().length === 2);
    expect(s.failure).toBeUndefined();
    await s.close();
  });

  test.each([
    ["on the stream (withdraw_credits)", true],
    ["by reopening its stream, from a shard that predates withdraw_credits", false],
  ])(
    "credits held by an idle shard are taken back when another shard of the queue needs them: %s",
    async (_, withdrawable) => {
      if (!withdrawable) predateWithdraw();
      const s = new Stream(rc);
      s.send({ subscribe: { commands: ["X"] }, credits: 2 }); // X is on a: a holds both credits
      await within(2_000, () => s.received.some((r) => r.subscribed));
      // the router routes X to b before the enqueue (else it would still go to a)
      await startMovingX();
      await rc.client("t1").enqueue({ command: "X", payload: payload("on b") });
      // a is idle and over its share: its credits are taken back and b gets one
      await within(4_000, () => s.tasks().length === 1);
      expect(s.tasks()[0]!.task!.shard).toBe("b");
      expect(s.failure).toBeUndefined();
      await s.close();
    },
  );

  test("a task held from a move's source does not keep the source's credits from the target", async () => {
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X"] }, credits: 4 }); // X is on a
    await within(2_000, () => s.received.some((r) => r.subscribed));
    const c = rc.client("t1");
    await c.enqueue({ command: "X", payload: payload("on a") });
    await within(2_000, () => s.tasks().length === 1);
    const held = s.tasks()[0]!;
    // X moves to b; the worker still holds a's task, and a holds the other three credits
    await startMovingX();
    await c.enqueueBatch({
      tasks: [1, 2, 3].map((n) => ({ command: "X", payload: payload(`on b ${n}`) })),
    });
    await within(3_000, () => s.tasks().length === 4);
    expect(s.tasks().map((t) => t.task!.shard)).toEqual(["a", "b", "b", "b"]);
    // a's task was not released meanwhile: its ack is applied
    s.send({ requestId: 1, acks: [{ leaseToken: held.leaseToken }] });
    await within(2_000, () => s.settled(1) !== undefined);
    expect(s.settled(1)!.acks[0]!.code).toBe(Status.OK);
    expect(s.failure).toBeUndefined();
    await s.close();
  });

  test("fewer credits than shards: the credit goes to the shard with a task once the other is idle", async () => {
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X", "Y"] }, credits: 1 }); // X on a, Y on b: one gets it
    await within(2_000, () => s.received.some((r) => r.subscribed));
    const c = rc.client("t1");
    await c.enqueue({ command: "X", payload: payload("x") });
    await c.enqueue({ command: "Y", payload: payload("y") });
    await within(2_000, () => s.tasks().length === 1);
    const first = s.tasks()[0]!;
    s.send({ requestId: 1, acks: [{ leaseToken: first.leaseToken }], credits: 1 });
    // the shard that had the credit has nothing left: the other gets it, unasked
    await within(2_000, () => s.tasks().length === 2);
    expect(new Set(s.tasks().map((t) => t.task!.shard))).toEqual(new Set(["a", "b"]));
    // both idle now, whichever holds the credit: a task on either shard is reached
    for (const [i, command] of ["X", "Y", "Y", "X"].entries()) {
      const last = s.tasks().at(-1)!;
      s.send({ requestId: 2 + i, acks: [{ leaseToken: last.leaseToken }], credits: 1 });
      await new Promise((r) => setTimeout(r, 600));
      await c.enqueue({ command, payload: payload(`${command}${i}`) });
      await within(3_000, () => s.tasks().length === 3 + i);
      expect(s.tasks().at(-1)!.task!.command).toBe(command);
    }
    expect(s.failure).toBeUndefined();
    await s.close();
  });

  test("fewer credits than shards: the other shard gets a turn while one has a backlog", async () => {
    const c = rc.client("t1");
    for (let i = 0; i < 5; i++)
      await c.enqueueBatch({
        tasks: Array.from({ length: 500 }, () => ({ command: "X", payload: payload("x") })),
      });
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X", "Y"] }, credits: 1 }); // X on a, Y on b
    // a worker that finishes each task at once and asks for the next
    let acked = 0;
    const worker = setInterval(() => {
      const tasks = s.tasks();
      if (tasks.length === acked) return;
      const done = tasks.slice(acked).map((t) => ({ leaseToken: t.leaseToken }));
      acked = tasks.length;
      s.send({ requestId: acked, acks: done, credits: done.length });
    }, 5);
    try {
      // a is busy, and b has had a turn with nothing to push when its task comes: its
      // next turn is at most 5 s after that one
      await within(2_000, () => s.tasks().length > 100);
      await new Promise((r) => setTimeout(r, 500));
      await c.enqueue({ command: "Y", payload: payload("y") });
      await within(7_000, () => s.tasks().some((t) => t.task!.command === "Y"));
      // a still had its backlog: b's turn came anyway
      expect((await stats("a", "X")).ready).toBeGreaterThan(0);
    } finally {
      clearInterval(worker);
    }
    expect(s.failure).toBeUndefined();
    await s.close();
  });

  test("a shard no longer wanted is asked what its stream holds: a task acked by a unary call lets it close", async () => {
    await rc.client("t1").enqueue({ command: "X", payload: payload("x") });
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X"] }, credits: 2 }); // X is on a
    await within(2_000, () => s.tasks().length === 1);
    await rc.change((m) => ({ ...m, commands: { ...m.commands, X: "b" } }));
    await within(2_000, () => rc.router.routing.currentShard("X", "t1") === "b");
    const streams = () => rc.workers.get("a")!.metrics.streamsOpen();
    expect(await streams()).toBe(1); // a's stream stays while its task is held
    const ack = await rc
      .client("t1")
      .ack({ items: [{ leaseToken: s.tasks()[0]!.leaseToken, result: Buffer.alloc(0) }] });
    expect(ack.results[0]!.code).toBe(Status.OK);
    // the router never saw that ack; asking the shard, it learns a's stream holds nothing
    const deadline = Date.now() + 5_000;
    while ((await streams()) > 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    expect(await streams()).toBe(0);
    expect(s.failure).toBeUndefined();
    await s.close();
  });

  test("withdraw_credits takes back what every shard stream holds; new credits resume", async () => {
    await startMovingX(); // two shard streams: a (the source) and b
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X"] }, credits: 10 });
    await within(2_000, () => s.received.some((r) => r.subscribed));
    expect(s.received.find((r) => r.subscribed)!.subscribed!.withdrawCredits).toBe(true);
    const c = rc.client("t1");
    const enqueue = (n: number) =>
      c.enqueueBatch({
        tasks: Array.from({ length: n }, (_, i) => ({ command: "X", payload: payload(`${i}`) })),
      });
    await enqueue(3);
    await within(2_000, () => s.tasks().length === 3);
    const withdrawn = (id: number) => s.received.find((r) => r.withdrawn?.requestId === id);
    s.send({ withdrawCredits: true, requestId: 5 });
    await within(2_000, () => withdrawn(5) !== undefined);
    expect(withdrawn(5)!.withdrawn).toMatchObject({ credits: 7, held: 3 });
    await enqueue(2);
    await new Promise((r) => setTimeout(r, 500));
    expect(s.tasks()).toHaveLength(3);
    // what was pushed before is still held: acked on the stream
    s.send({ requestId: 6, acks: s.tasks().map((t) => ({ leaseToken: t.leaseToken })) });
    await within(2_000, () => s.settled(6) !== undefined);
    expect(s.settled(6)!.acks.map((a) => a.code)).toEqual([Status.OK, Status.OK, Status.OK]);
    // credits sent with a withdrawal count after it; those sent later too
    s.send({ withdrawCredits: true, requestId: 7, credits: 1 });
    s.send({ credits: 1 });
    await within(2_000, () => withdrawn(7) !== undefined);
    expect(withdrawn(7)!.withdrawn).toMatchObject({ credits: 0, held: 0 });
    await within(2_000, () => s.tasks().length === 5);
    await new Promise((r) => setTimeout(r, 200));
    expect(s.tasks()).toHaveLength(5);
    expect(s.failure).toBeUndefined();
    await s.close();
  });

  test("withdraw_credits sent before the shards have answered the subscription", async () => {
    await rc.client("t1").enqueueBatch({
      tasks: [1, 2, 3].map((n) => ({ command: "X", payload: payload(`x${n}`) })),
    });
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X"] }, credits: 5 });
    s.send({ withdrawCredits: true, requestId: 1 });
    await within(2_000, () => s.received.some((r) => r.withdrawn));
    const pushed = s.tasks().length;
    expect(pushed + s.received.find((r) => r.withdrawn)!.withdrawn!.credits).toBe(5);
    await new Promise((r) => setTimeout(r, 300));
    expect(s.tasks()).toHaveLength(pushed); // nothing after the answer
    // what was pushed is still held: its shard stream was not closed under it
    s.send({ requestId: 2, acks: s.tasks().map((t) => ({ leaseToken: t.leaseToken })) });
    await within(2_000, () => s.settled(2) !== undefined);
    expect(s.settled(2)!.acks.every((a) => a.code === Status.OK)).toBe(true);
    expect(s.failure).toBeUndefined();
    await s.close();
  });

  test("a shard no longer wanted keeps its stream while the shard says it holds a task, whatever the acks", async () => {
    const { s, tokens } = await holdingTwoOfX(3);
    const [t1, t2] = tokens;
    // X now lives on b alone: a's stream stays only for what it pushed
    await rc.change((m) => ({ ...m, commands: { ...m.commands, X: "b" } }));
    await within(2_000, () => rc.router.routing.currentShard("X", "t1") === "b");
    // the same ack twice: both answered OK, so counting answers would say a holds nothing
    s.send({ requestId: 1, acks: [{ leaseToken: t1! }] });
    await within(2_000, () => s.settled(1) !== undefined);
    s.send({ requestId: 2, acks: [{ leaseToken: t1! }] });
    await within(2_000, () => s.settled(2) !== undefined);
    expect([s.settled(1)!.acks[0]!.code, s.settled(2)!.acks[0]!.code]).toEqual([0, 0]);
    await new Promise((r) => setTimeout(r, 300));
    // a's stream was not closed under the other task: its ack is applied
    s.send({ requestId: 3, acks: [{ leaseToken: t2! }] });
    await within(2_000, () => s.settled(3) !== undefined);
    expect(s.settled(3)!.acks[0]!.code).toBe(Status.OK);
    expect((await stats("a", "X")).completed).toBe(2);
    expect(s.failure).toBeUndefined();
    await s.close();
  });

  test("an ack that may not have been applied keeps its lease held: the shard stream is not recycled under it", async () => {
    const { s, tokens } = await holdingTwoOfX(2);
    const [t1, t2] = tokens;
    // shard a's store fails the first ack: answered UNAVAILABLE, the lease still held
    const engineA = rc.workers.get("a")!.engine;
    const ack = engineA.ack.bind(engineA);
    engineA.ack = async () => {
      engineA.ack = ack;
      throw new Error("Connection is closed.");
    };
    s.send({ requestId: 1, acks: [{ leaseToken: t1! }] });
    await within(2_000, () => s.settled(1) !== undefined);
    expect(s.settled(1)!.acks[0]!.code).toBe(Status.UNAVAILABLE);
    s.send({ requestId: 2, acks: [{ leaseToken: t2! }], credits: 2 });
    await within(2_000, () => s.settled(2) !== undefined);
    // X moves to b and gets a task there: b wants credits, a is idle and holds two
    await startMovingX();
    await rc.client("t1").enqueue({ command: "X", payload: payload("on b") });
    await new Promise((r) => setTimeout(r, 1_000));
    // the client sends the ack again, as UNAVAILABLE asks: the lease was not released
    // by a recycled stream meanwhile
    s.send({ requestId: 3, acks: [{ leaseToken: t1! }] });
    await within(2_000, () => s.settled(3) !== undefined);
    expect(s.settled(3)!.acks[0]!.code).toBe(Status.OK);
    expect((await stats("a", "X")).completed).toBe(2);
    await s.close();
  });

  test("credits follow demand: a shard with nothing to push keeps only a few", async () => {
    // X moves a → b: the stream reads both, but only b gets new tasks
    await startMovingX();
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X"], maxBatch: 100 }, credits: 100 });
    await within(2_000, () => s.received.some((r) => r.subscribed));
    await new Promise((r) => setTimeout(r, 1_200)); // both shard streams idle
    await rc.client("t1").enqueueBatch({
      tasks: Array.from({ length: 90 }, (_, i) => ({ command: "X", payload: payload(`${i}`) })),
    });
    // an even split would leave half of the credits with a; b gets all but a's few,
    // without the client returning a single credit
    await within(4_000, () => s.tasks().length === 90);
    expect(new Set(s.tasks().map((t) => t.task!.shard))).toEqual(new Set(["b"]));
    expect(s.failure).toBeUndefined();
    await s.close();
  });

  test("a shard stream whose credits were taken back while idle is busy once it pushes: its full share comes back at once", async () => {
    // subscribed to X and Z, both on a: one shard stream, holding every credit
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X", "Z"], maxBatch: 100 }, credits: 100 });
    await within(2_000, () => s.received.some((r) => r.subscribed));
    // X moves a → b: a's idle stream, holding more than its share, gives credits back
    await startMovingX();
    await new Promise((r) => setTimeout(r, 1_000));
    // Z (default shard a) gets busy; the client spends every credit and returns none
    await rc.client("t1").enqueueBatch({
      tasks: Array.from({ length: 200 }, (_, i) => ({ command: "Z", payload: payload(`${i}`) })),
    });
    await within(4_000, () => s.tasks().length === 100);
    await new Promise((r) => setTimeout(r, 500)); // a has pushed nothing since: it holds no credit
    const before = s.received.length;
    s.send({ credits: 100 });
    const pushes = () => s.received.slice(before).filter((r) => (r.tasks?.tasks.length ?? 0) > 0);
    await within(4_000, () => pushes().length > 0);
    // a is busy, not idle: its first push after the credits is its busy share, not the idle allowance
    // (b's idle allowance may come back to a later: never less than the busy share)
    expect(pushes()[0]!.tasks!.tasks.length).toBeGreaterThanOrEqual(90);
    expect(new Set(s.tasks().map((t) => t.task!.shard))).toEqual(new Set(["a"]));
    expect(s.failure).toBeUndefined();
    await s.close();
  });

  test("a client that acks and half-closes at once gets its answers, and its acks are applied", async () => {
    await rc.client("t1").enqueueBatch({
      tasks: [1, 2].map((n) => ({ command: "X", payload: payload(`x${n}`), maxAttempts: 1 })),
    });
    const s = new Stream(rc);
    s.send({ subscribe: { commands: ["X"] }, credits: 5 }); // X is on a
    await within(2_000, () => s.tasks().length === 2);
    // a worker shutting down: no more tasks, its last acks, and it half-closes
    s.send({ withdrawCredits: true, requestId: 1 });
    s.send({ requestId: 2, acks: s.tasks().map((t) => ({ leaseToken: t.leaseToken })) });
    s.requests.close();
    await within(5_000, () => s.settled(2) !== undefined);
    expect(s.settled(2)!.acks.map((a) => a.code)).toEqual([Status.OK, Status.OK]);
    expect(s.received.find((r) => r.withdrawn)?.withdrawn?.credits).toBe(3);
    // every request answered, the router ends the stream itself (OK)
    await within(3_000, () => s.ended);
    expect(s.failure).toBeUndefined();
    // applied, not released (a release on the only attempt would have dead-lettered them)
    expect(await stats("a", "X")).toMatchObject({ completed: 2, dead: 0, leased: 0 });
  });

  test("bad first message fails the stream with INVALID_ARGUMENT", async () => {
    const s = new Stream(rc);
    s.send({ credits: 1 });
    await within(2_000, () => s.failure !== undefined);
    expect((s.failure as ClientError).code).toBe(Status.INVALID_ARGUMENT);
  });
});
