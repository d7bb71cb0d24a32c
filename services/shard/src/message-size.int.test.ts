import { Status } from "nice-grpc";
import { MAX_RESULT_BYTES, TASK_FIELDS_MAX_BYTES } from "@codeq/wire";
import { shardFixture, StreamDriver, eventually, SUB, type ShardFixture } from "./test/fixture";

/**
 * A LeaseStream message larger than the shard worker's request limit (acks with large
 * results): the transport ends the stream before reading it, so none of its acks is
 * applied, and the stream's leases are released: the tasks come back, none is lost, and
 * the same acks sent in smaller messages go through (docs/shard-worker.md, "Message
 * size").
 */
let fx: ShardFixture;
// the least request limit a shard worker takes: one ack's largest result and the rest
beforeAll(
  async () =>
    (fx = await shardFixture({ maxMessageBytes: MAX_RESULT_BYTES + TASK_FIELDS_MAX_BYTES })),
);
afterAll(() => fx.close());

it("a stream message over maxMessageBytes ends the stream; its tasks come back, none lost", async () => {
  const producer = fx.client("t1");
  await producer.enqueueBatch({
    tasks: ["a", "b"].map((p) => ({ command: "BIG_ACKS", payload: Buffer.from(p) })),
  });
  const stream = new StreamDriver(fx.client("t1"));
  stream.send({ ...SUB(["BIG_ACKS"]), credits: 2 });
  await stream.next(); // subscribed
  const pushed = [];
  while (pushed.length < 2) pushed.push(...(await stream.next())!.tasks!.tasks);
  const result = Buffer.alloc(MAX_RESULT_BYTES, 1);
  stream.send({
    requestId: 1,
    acks: pushed.map((t) => ({ leaseToken: t.leaseToken, result })),
  });
  const ended = (async () => {
    while (await stream.next(10_000));
  })();
  await expect(ended).rejects.toMatchObject({
    code: Status.RESOURCE_EXHAUSTED,
    details: expect.stringMatching(/larger than max/),
  });
  await eventually(
    async () => (await producer.queueStats({ command: "BIG_ACKS" })).total?.ready === 2,
  );
  const again = await producer.lease({ commands: ["BIG_ACKS"], maxTasks: 2 });
  expect(again.tasks.map((t) => t.task!.id).sort()).toEqual(pushed.map((t) => t.task!.id).sort());
  expect(again.tasks.every((t) => t.task!.lastError === "lease stream closed")).toBe(true);
  // one result a request fits
  for (const t of again.tasks) {
    const acked = await producer.ack({ items: [{ leaseToken: t.leaseToken, result }] });
    expect(acked.results.map((r) => r.code)).toEqual([Status.OK]);
  }
  expect((await producer.queueStats({ command: "BIG_ACKS" })).total).toMatchObject({
    ready: 0,
    leased: 0,
    completed: 2,
  });
});
