import { StreamDriver, eventually, SUB, useRelayedShard } from "./test/fixture";

/** A RESP array: a script's reply (the worker's pings are answered `+PONG`). */
const scriptReply = (reply: Buffer) => reply[0] === 0x2a;

describe("a shard worker whose store connection lost a lease's reply", () => {
  // no safety-net re-wake and a lazy due loop: only a notification can deliver promptly
  const rs = useRelayedShard({ rewakeMs: 3_600_000, dueIdleMs: 60_000 });

  it("pushes at once to a waiting stream the tasks the lost handoff had taken", async () => {
    const stream = new StreamDriver(rs.fx.client("t-lost"));
    stream.send({ ...SUB(["LOST"]), credits: 5 });
    await stream.next(); // subscribed
    await eventually(async () => rs.fx.worker.notifier.parked > 0);
    // the enqueue hands both tasks to the stream's lease in one script; its reply is lost
    rs.relay.dropNextReply(scriptReply);
    const res = await rs.fx
      .client("t-lost")
      .enqueueBatch({ tasks: [{ command: "LOST" }, { command: "LOST" }] as never });
    expect(rs.relay.dropped).toBe(1);
    const ids = res.results.map((r) => r.taskId);
    const got: string[] = [];
    while (got.length < 2) {
      const pushed = await stream.next(3_000);
      got.push(...(pushed?.tasks?.tasks.map((t) => t.task!.id) ?? []));
    }
    expect(got.sort()).toEqual([...ids].sort());
    // delivered once each, as first attempts
    const stats = await rs.fx.client("t-lost").queueStats({ command: "LOST" });
    expect(stats.total).toMatchObject({ leased: 2, ready: 0 });
    stream.close();
  });
});
