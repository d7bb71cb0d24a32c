import { createChannel, createClient, Metadata, Status } from "nice-grpc";
import { MigrationState, QueueServiceDefinition } from "@codeq/proto";
import { TASK_FIELDS_MAX_BYTES } from "@codeq/wire";
import { routerCluster, within, type RouterCluster } from "./test/cluster";

/**
 * A payload cap past the usual 16 MiB request limit, with `maxMessageBytes` raised to
 * match on the router and the shard worker (a shard's cap is refused at start unless a
 * request can carry a task that large): such a task is stored and delivered through
 * the router, and one past the cap is refused by the cap, not by the transport.
 */
const MIB = 1024 * 1024;
const CAP = 17 * MIB;
let rc: RouterCluster;
beforeAll(async () => {
  const limits = { payloadCapBytes: CAP, maxMessageBytes: 24 * MIB };
  rc = await routerCluster({ shards: ["a"], router: limits, shard: limits });
});
afterAll(() => rc.close());

it("a task of 17 MiB goes through the router and back when every limit allows it", async () => {
  // a worker taking tasks that large raises its own receive limit (4 MiB by default)
  const channel = createChannel(`127.0.0.1:${rc.router.port}`, undefined, {
    "grpc.max_receive_message_length": -1,
  });
  const client = createClient(QueueServiceDefinition, channel, {
    "*": { metadata: new Metadata({ "x-codeq-tenant": "t1" }) },
  });
  try {
    const payload = Buffer.alloc(CAP, 7);
    const { taskId } = await client.enqueue({ command: "HUGE", payload });
    const got = await client.lease({ commands: ["HUGE"], maxTasks: 2 });
    expect(got.tasks.map((t) => t.task!.id)).toEqual([taskId]);
    expect(Buffer.from(got.tasks[0]!.task!.payload).equals(payload)).toBe(true);
    const acked = await client.ack({ items: [{ leaseToken: got.tasks[0]!.leaseToken }] });
    expect(acked.results.map((r) => r.code)).toEqual([Status.OK]);
    await expect(
      client.enqueue({ command: "HUGE", payload: Buffer.alloc(CAP + 1) }),
    ).rejects.toMatchObject({
      code: Status.RESOURCE_EXHAUSTED,
      details: expect.stringContaining(`the cap is ${CAP}`),
    });
    expect((await client.queueStats({ command: "HUGE" })).total).toMatchObject({
      ready: 0,
      leased: 0,
      completed: 1,
    });
  } finally {
    channel.close();
  }
});

describe("with requests that hold one task at the cap and little more", () => {
  // 1 MiB tasks, requests of 1 MiB + 288 KiB + 64 KiB: a 4 MiB move batch would not fit
  const limits = { payloadCapBytes: MIB, maxMessageBytes: MIB + TASK_FIELDS_MAX_BYTES + 65_536 };
  let small: RouterCluster;
  beforeAll(async () => {
    small = await routerCluster({ shards: ["a", "b"], router: limits, shard: limits });
  });
  afterAll(() => small.close());

  it("a command of tasks at the cap moves, one per request", async () => {
    const c = small.client("t1");
    const ids = new Set<string>();
    for (let i = 0; i < 6; i++)
      ids.add((await c.enqueue({ command: "M", payload: Buffer.alloc(MIB, i) })).taskId);
    const from = small.router.routing.currentShard("M", "t1");
    const to = from === "a" ? "b" : "a";
    const admin = small.admin();
    const { migrations } = await admin.assignCommand({ command: "M", shard: to });
    await within(15_000, async () => {
      const m = (await admin.getMigration({ id: migrations[0]!.id })).migration!;
      return m.state === MigrationState.MIGRATION_STATE_COMPLETED;
    });
    const stats = (shard: string) =>
      small.workers.get(shard)!.engine.stats({ command: "M", tenant: "t1" });
    expect(await stats(to)).toMatchObject({ ready: 6 });
    expect(await stats(from)).toMatchObject({ ready: 0, leased: 0 });
    const got = await c.lease({ commands: ["M"], maxTasks: 1 });
    expect(ids.has(got.tasks[0]!.task!.id)).toBe(true);
  });
});
