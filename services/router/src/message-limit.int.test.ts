import { createChannel, createClient, Metadata, Status } from "nice-grpc";
import { QueueServiceDefinition } from "@codeq/proto";
import { routerCluster, type RouterCluster } from "./test/cluster";

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
