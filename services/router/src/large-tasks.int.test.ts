import { createChannel, createClient, Metadata } from "nice-grpc";
import { QueueServiceDefinition, TaskState, type QueueServiceClient } from "@codeq/proto";
import { MAX_RESPONSE_BYTES_HEADER } from "@codeq/wire";
import { StreamDriver, SUB } from "../../shard/src/test/fixture";
import { routerCluster, within, type RouterCluster } from "./test/cluster";

/**
 * Tasks near the payload cap (1 MiB) through a real router and shard workers, with
 * clients on gRPC's default 4 MiB receive limit: no answer may be larger than that,
 * and no task may be stranded by one that was.
 */
let rc: RouterCluster;
beforeAll(async () => {
  rc = await routerCluster({ shards: ["a", "b"], commands: { BIG_A: "a", BIG_B: "b" } });
});
afterAll(() => rc.close());

const MIB = 1024 * 1024;
const payload = (i: number) => Buffer.alloc(MIB - 200, i);

/** A client of one shard worker, as the router's callers would be. */
function direct(shard: string, roles?: string): QueueServiceClient {
  const metadata = new Metadata({ "x-codeq-tenant": "t1" });
  if (roles) metadata.set("x-codeq-roles", roles);
  return createClient(QueueServiceDefinition, createChannel(rc.addresses.get(shard)!), {
    "*": { metadata },
  });
}

async function fill(command: string, n: number, maxAttempts = 0): Promise<void> {
  const c = rc.client("t1");
  for (let i = 0; i < n; i++) await c.enqueue({ command, payload: payload(i), maxAttempts });
}

const total = async (command: string) => (await rc.client("t1").queueStats({ command })).total!;

describe.each([
  ["through the router", () => rc.client("t1")],
  ["direct to the shard", () => direct(rc.router.routing.currentShard("BIG_D", "t1"))],
])("a unary Lease of 1 MiB tasks %s", (path, client) => {
  const command = path === "direct to the shard" ? "BIG_D" : "BIG_R";

  it("answers with what fits in 4 MiB and leaves the rest ready, uncounted", async () => {
    await fill(command, 8);
    const got = await client().lease({ commands: [command], maxTasks: 8 });
    expect(got.tasks.length).toBeGreaterThanOrEqual(1);
    expect(got.tasks.length).toBeLessThanOrEqual(3);
    expect(await total(command)).toMatchObject({
      leased: got.tasks.length,
      ready: 8 - got.tasks.length,
    });
    const next = await client().lease({ commands: [command], maxTasks: 8 });
    expect(next.tasks.every((t) => t.task!.attempts === 1)).toBe(true);
    await client().ack({
      items: [...got.tasks, ...next.tasks].map((t) => ({
        leaseToken: t.leaseToken,
        result: Buffer.alloc(0),
      })),
    });
  });
});

it("a LeaseStream through the router pushes 1 MiB tasks in answers a client accepts", async () => {
  await fill("BIG_S", 8);
  const stream = new StreamDriver(rc.client("t1"));
  stream.send({ ...SUB(["BIG_S"]), credits: 8 });
  await stream.next(); // subscribed
  const ids = new Set<string>();
  while (ids.size < 8) {
    const message = await stream.next(5_000);
    if (message?.settled) continue;
    const batch = message!.tasks!.tasks;
    expect(batch.length).toBeLessThanOrEqual(3);
    for (const t of batch) ids.add(t.task!.id);
    stream.send({
      requestId: ids.size,
      acks: batch.map((t) => ({ leaseToken: t.leaseToken, result: Buffer.alloc(0) })),
    });
  }
  stream.close();
  await within(5_000, async () => (await total("BIG_S")).completed === 8);
  expect((await total("BIG_S")).dead).toBe(0);
});

it("a command of 1 MiB tasks moves to another shard", async () => {
  await fill("BIG_M", 30);
  const from = rc.router.routing.currentShard("BIG_M", "t1");
  const to = from === "a" ? "b" : "a";
  await rc.admin().assignCommand({ command: "BIG_M", shard: to });
  await within(30_000, async () => (await rc.source.get())!.migrations.length === 0);
  const target = await rc.workers.get(to)!.engine.stats({ command: "BIG_M", tenant: "t1" });
  expect(target.ready).toBe(30);
  const task = await rc.client("t1").lease({ commands: ["BIG_M"], maxTasks: 1 });
  expect(task.tasks[0]!.task!.payload.length).toBe(MIB - 200);
  expect(task.tasks[0]!.task!.state).toBe(TaskState.TASK_STATE_LEASED);
}, 60_000);

describe.each([
  ["through the router", () => rc.client("t1", "admin,worker,producer")],
  ["direct to the shard", () => direct(rc.router.routing.currentShard("DEAD_D", "t1"), "admin")],
])("ListDead of 1 MiB tasks %s", (path, client) => {
  const command = path === "direct to the shard" ? "DEAD_D" : "DEAD_R";

  it("pages them in answers a client accepts, each task once", async () => {
    await fill(command, 8);
    const c = rc.client("t1");
    const leased = await c.lease({ commands: [command], maxTasks: 8 });
    let left = 8;
    for (let got = leased; left > 0; got = await c.lease({ commands: [command], maxTasks: 8 })) {
      left -= got.tasks.length;
      await c.nack({
        items: got.tasks.map((t) => ({ leaseToken: t.leaseToken, deadLetter: true, error: "" })),
      });
    }
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await client().listDead({ command, pageSize: 100, pageToken });
      expect(page.tasks.length).toBeLessThanOrEqual(3);
      seen.push(...page.tasks.map((t) => t.id));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toHaveLength(8);
    expect(new Set(seen).size).toBe(8);
  });
});

it("a shard lists only what fits under a router's lower bound, and a token to go on", async () => {
  await fill("DEAD_H", 2);
  const c = rc.client("t1");
  const got = await c.lease({ commands: ["DEAD_H"], maxTasks: 2 });
  await c.nack({
    items: got.tasks.map((t) => ({ leaseToken: t.leaseToken, deadLetter: true, error: "" })),
  });
  const shard = direct(rc.router.routing.currentShard("DEAD_H", "t1"), "admin");
  const strict = await shard.listDead(
    { command: "DEAD_H", pageSize: 10, pageToken: "" },
    {
      metadata: Metadata({
        "x-codeq-tenant": "t1",
        "x-codeq-roles": "admin",
        [MAX_RESPONSE_BYTES_HEADER]: "1000",
      }),
    },
  );
  expect(strict.tasks).toEqual([]);
  expect(strict.nextPageToken).not.toBe("");
  const next = await shard.listDead({
    command: "DEAD_H",
    pageSize: 10,
    pageToken: strict.nextPageToken,
  });
  expect(next.tasks).toHaveLength(2);
});

it("a Lease answered by two shards keeps what fits and gives the rest back, unspent", async () => {
  await fill("BIG_A", 3, 1);
  await fill("BIG_B", 3, 1);
  const before = await givenBack();
  const c = rc.client("t1");
  const got = await c.lease({ commands: ["BIG_A", "BIG_B"], maxTasks: 8 });
  expect(got.tasks.length).toBeGreaterThanOrEqual(1);
  expect(got.tasks.length).toBeLessThanOrEqual(3);
  // one attempt each: what did not fit is ready again, not dead
  await within(5_000, async () => {
    const [a, b] = [await total("BIG_A"), await total("BIG_B")];
    return a.ready + b.ready === 6 - got.tasks.length;
  });
  expect((await total("BIG_A")).dead + (await total("BIG_B")).dead).toBe(0);
  // counted where they were given back
  expect((await givenBack()) - before).toBe(6 - got.tasks.length);
});

/** Leases the shard workers gave back undelivered, so far. */
async function givenBack(): Promise<number> {
  let n = 0;
  for (const worker of rc.workers.values()) {
    const metric = worker.metrics.registry.getSingleMetric("codeq_leases_given_back_total")!;
    n += (await metric.get()).values[0]?.value ?? 0;
  }
  return n;
}
