import { Redis } from "ioredis";
import {
  ClientError,
  createChannel,
  createClient,
  Metadata,
  Status,
  type Channel,
} from "nice-grpc";
import {
  AdminServiceDefinition,
  internal,
  MigrationState,
  LeaseStreamRequest,
  QueueServiceDefinition,
  type LeaseStreamResponse,
} from "@codeq/proto";
import { shardMapKey, type ShardMap } from "@codeq/shardmap";
import { MAP_HEALTH_SERVICE } from "@codeq/server-kit";
import { HealthDefinition } from "nice-grpc-server-health";
import { HealthCheckResponse_ServingStatus } from "nice-grpc-server-health/lib/proto/grpc/health/v1/health";
import { startLocalCluster, type LocalCluster } from "./local-cluster";

/**
 * The routing acceptance tests on a real local cluster: a control store, three
 * shards (redis-server + shard worker process) and two router processes, all on
 * loopback, started and stopped by PID. Commands X, Y, Z live on shards a, b, c.
 */

let cluster: LocalCluster;
const channels: Channel[] = [];

beforeAll(async () => {
  cluster = await startLocalCluster({
    shards: 3,
    routers: 2,
    commands: { X: "a", Y: "b", Z: "c" },
    // breakers reopen quickly so the recovery test stays short
    env: { CODEQ_ROUTER_BREAKER_RESET_MS: "500" },
  });
}, 90_000);

afterAll(async () => {
  for (const c of channels) c.close();
  await cluster?.stop();
});

const channel = (address: string) => {
  const c = createChannel(address);
  channels.push(c);
  return c;
};
const meta = (tenant: string, roles?: string) => ({
  "*": {
    metadata: new Metadata({
      "x-codeq-tenant": tenant,
      ...(roles ? { "x-codeq-roles": roles } : {}),
    }),
  },
});
const queue = (router = 0, tenant = "t1") =>
  createClient(QueueServiceDefinition, channel(cluster.routers[router]!.address), meta(tenant));
const admin = (router = 0) =>
  createClient(
    AdminServiceDefinition,
    channel(cluster.routers[router]!.address),
    meta("ops", "admin"),
  );
const shardStatus = (i: number) =>
  createClient(internal.ShardServiceDefinition, channel(cluster.shards[i]!.address), {
    "*": { metadata: cluster.shardMetadata() },
  }).getShardStatus({});

async function within(timeoutMs: number, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check().catch(() => false)) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Every router and shard worker holds map version `v`. */
async function everywhere(v: number): Promise<boolean> {
  const routers = await Promise.all(cluster.routers.map((_, i) => admin(i).getShardMap({})));
  const shards = await Promise.all(cluster.shards.map((_, i) => shardStatus(i)));
  return routers.every((r) => r.map!.version === v) && shards.every((s) => s.mapVersion === v);
}

async function changeMap(edit: (m: ShardMap) => Omit<ShardMap, "version" | "updatedAtMs">) {
  const source = cluster.mapSource();
  try {
    const current = (await source.get())!;
    return await source.compareAndSet(current.version, edit(current), {
      actor: "test",
      action: "Change",
      summary: "",
    });
  } finally {
    await source.close();
  }
}

describe("routing on a real local cluster", () => {
  test("a shard worker refuses direct calls without the routers' secret", async () => {
    const direct = createClient(
      QueueServiceDefinition,
      channel(cluster.shards[0]!.address),
      meta("t1"),
    );
    const err = await direct.enqueue({ command: "X" }).catch((e: ClientError) => e);
    expect((err as ClientError).code).toBe(Status.UNAUTHENTICATED);
    const internalErr = await createClient(
      internal.ShardServiceDefinition,
      channel(cluster.shards[0]!.address),
    )
      .getShardStatus({})
      .catch((e: ClientError) => e);
    expect((internalErr as ClientError).code).toBe(Status.UNAUTHENTICATED);
    // through the router the same caller gets in
    expect(
      (await queue(0).enqueue({ command: "X", payload: Buffer.from("x") })).taskId,
    ).toHaveLength(26);
  });

  test("a map change reaches every router and shard worker within 1 s through the announcement", async () => {
    const next = await changeMap((m) => ({ ...m, commands: { ...m.commands, W: "b" } }));
    const took = await within(1_000, () => everywhere(next.version));
    expect(took).toBeLessThan(1_000);
    const res = await queue(1).enqueue({ command: "W", payload: Buffer.from("w") });
    const task = await queue(0).getTask({ command: "W", taskId: res.taskId });
    expect(task.task!.shard).toBe("b");
  }, 30_000);

  test("with the announcement lost, the change arrives within the poll interval", async () => {
    // written straight to the key, as a compare-and-set whose PUBLISH never arrived
    const redis = new Redis(cluster.control.url);
    try {
      const current = JSON.parse((await redis.get(shardMapKey()))!) as ShardMap;
      const next = {
        ...current,
        version: current.version + 1,
        commands: { ...current.commands, V: "c" },
      };
      await redis.set(shardMapKey(), JSON.stringify(next));
      // the local cluster polls every 1000 ms
      const took = await within(2_500, () => everywhere(next.version));
      expect(took).toBeLessThan(2_500);
    } finally {
      redis.disconnect();
    }
  }, 30_000);

  test("with the control store down, routers keep serving with the last map and say it is stale", async () => {
    // health: the map's own service name says whether it is confirmed; the service as a
    // whole stays SERVING (it still routes)
    const mapHealth = async (address: string) => {
      const health = createClient(HealthDefinition, channel(address));
      const [all, map] = await Promise.all([
        health.check({ service: "" }),
        health.check({ service: MAP_HEALTH_SERVICE }),
      ]);
      expect(all.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
      return map.status;
    };
    const addresses = [cluster.routers[0]!.address, cluster.shards[0]!.address];
    for (const a of addresses)
      expect(await mapHealth(a)).toBe(HealthCheckResponse_ServingStatus.SERVING);
    await cluster.control.kill(); // down, its data kept for the restart
    try {
      await within(5_000, async () => (await admin(0).getShardMap({})).stale);
      for (const a of addresses)
        await within(
          5_000,
          async () => (await mapHealth(a)) === HealthCheckResponse_ServingStatus.NOT_SERVING,
        );
      const c = queue(0);
      const res = await c.enqueue({ command: "Y", payload: Buffer.from("still routed") });
      expect((await c.getTask({ command: "Y", taskId: res.taskId })).task!.shard).toBe("b");
    } finally {
      await cluster.control.restart();
    }
    await within(5_000, async () => !(await admin(0).getShardMap({})).stale);
    for (const a of addresses)
      await within(
        5_000,
        async () => (await mapHealth(a)) === HealthCheckResponse_ServingStatus.SERVING,
      );
  }, 30_000);

  test("one shard down: its queues fail fast through the open breaker, the others keep working, and it recovers", async () => {
    const b = cluster.shards[1]!;
    await b.worker.stop();
    try {
      const c = queue(0);
      const codes: Status[] = [];
      for (let i = 0; i < 10; i++) {
        codes.push(
          await c.enqueue({ command: "Y", payload: Buffer.from("y") }).then(
            () => Status.OK,
            (err: ClientError) => err.code,
          ),
        );
      }
      expect(codes.every((code) => code === Status.UNAVAILABLE)).toBe(true);
      const started = Date.now();
      const err = await c
        .enqueue({ command: "Y", payload: Buffer.from("y") })
        .catch((e: ClientError) => e);
      // at once, by the open breaker: not sent, not waiting on a connection or a timeout
      expect((err as ClientError).details).toMatch(/circuit breaker is open/);
      expect(Date.now() - started).toBeLessThan(1_000);
      const list = await admin(0).listShards({});
      expect(list.shards.find((s) => s.shard!.id === "b")!.healthy).toBe(false);
      // every other queue keeps working
      await c.enqueue({ command: "X", payload: Buffer.from("x") });
      await c.enqueue({ command: "Z", payload: Buffer.from("z") });
    } finally {
      await b.restartWorker();
    }
    await within(10_000, async () => {
      await queue(0).enqueue({ command: "Y", payload: Buffer.from("back") });
      return true;
    });
  }, 60_000);

  test("a LeaseStream through a router keeps delivering while its command is reassigned", async () => {
    const requests = new (await import("@codeq/server-kit")).Channel<LeaseStreamRequest>();
    const send = (r: Parameters<typeof LeaseStreamRequest.fromPartial>[0]) =>
      requests.push(LeaseStreamRequest.fromPartial(r));
    const abort = new AbortController();
    const received: LeaseStreamResponse[] = [];
    let failure: unknown;
    const acked = new Set<string>();
    const shards = new Set<string>();
    let requestId = 0;
    const reading = (async () => {
      try {
        for await (const res of queue(1, "t2").leaseStream(requests, { signal: abort.signal })) {
          received.push(res);
          const tasks = res.tasks?.tasks ?? [];
          if (tasks.length === 0) continue;
          for (const t of tasks) {
            acked.add(t.task!.id);
            shards.add(t.task!.shard);
          }
          send({
            requestId: ++requestId,
            credits: tasks.length,
            acks: tasks.map((t) => ({ leaseToken: t.leaseToken })),
          });
        }
      } catch (err) {
        failure = err;
      }
    })();
    send({ subscribe: { commands: ["M"] }, credits: 20 });
    await within(5_000, async () => received.some((r) => r.subscribed));
    const producer = queue(0, "t2");
    const ids = new Set<string>();
    const produce = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const res = await producer.enqueue({ command: "M", payload: Buffer.from(String(i)) });
        ids.add(res.taskId);
      }
    };
    try {
      await produce(30); // M on the default shard a
      // the real move: AssignCommand, the mover copies what a holds to c
      const { migrations } = await admin(0).assignCommand({ command: "M", tenant: "", shard: "c" });
      await produce(30);
      await within(10_000, async () => {
        const m = await admin(1).getMigration({ id: migrations[0]!.id });
        return m.migration!.state === MigrationState.MIGRATION_STATE_COMPLETED;
      });
      await produce(30);
      await within(10_000, async () => [...ids].every((id) => acked.has(id)));
      expect(failure).toBeUndefined();
      expect([...shards].sort()).toEqual(["a", "c"]);
    } finally {
      abort.abort();
      await reading;
    }
  }, 60_000);
});
