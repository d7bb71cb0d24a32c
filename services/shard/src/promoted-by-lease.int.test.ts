import { setTimeout as sleep } from "node:timers/promises";
import { eventually, shardFixture, StreamDriver, SUB } from "./test/fixture";

describe("due tasks a lease call promotes before the due loop does", () => {
  it("are announced: a parked stream gets those the lease left", async () => {
    // no safety-net re-wake: only an announcement can deliver
    const fx = await shardFixture({ rewakeMs: 3_600_000 });
    const engine = fx.worker.engine;
    // the due loop runs late for this queue (a slow store, a busy pass): its promote waits
    const promote = engine.promote.bind(engine);
    let late!: () => void;
    const gate = new Promise<void>((resolve) => (late = resolve));
    engine.promote = async (queue, limit) => {
      if (queue.command === "PROMO") await gate;
      return promote(queue, limit);
    };
    try {
      const queue = { command: "PROMO", tenant: "t-promo" };
      const stream = new StreamDriver(fx.client("t-promo"));
      stream.send({ ...SUB(["PROMO"]), credits: 10 });
      await stream.next(); // subscribed
      await eventually(async () => fx.worker.notifier.waitingOn(queue) > 0);
      const c = fx.client("t-promo");
      await c.enqueueBatch({
        tasks: Array.from({ length: 3 }, () => ({ command: "PROMO", delayMs: 200 })),
      });
      await sleep(400);
      // a poller's lease promotes the three and takes one
      const got = await c.lease({ commands: ["PROMO"], maxTasks: 1, waitMs: 0 });
      expect(got.tasks).toHaveLength(1);
      // the stream is told of the two left, while the due loop still waits
      expect(await stream.pushed(2)).toHaveLength(2);
    } finally {
      late();
      await fx.close();
    }
  });
});
