import { setTimeout as sleep } from "node:timers/promises";
import { TaskState } from "@codeq/proto";
import type { Redis } from "ioredis";
import { eventually, shardFixture, type ShardFixture } from "./test/fixture";

describe("a lease an extend shortens", () => {
  it("is reaped at its new deadline, not when the due loop would next have looked", async () => {
    // the due loop sleeps up to 15 s when nothing is due sooner
    const fx = await shardFixture({ dueIdleMs: 15_000 });
    try {
      const c = fx.client("t-short");
      const { taskId } = await c.enqueue({ command: "SHORT" });
      const got = await c.lease({ commands: ["SHORT"], maxTasks: 1, leaseDurationMs: 600_000 });
      await sleep(300); // the due loop sleeps on the ten-minute deadline
      const extended = await c.extend({
        items: [{ leaseToken: got.tasks[0]!.leaseToken, leaseDurationMs: 1_000 }],
      });
      const deadline = extended.results[0]!.leaseDeadlineMs;
      expect(deadline - Date.now()).toBeLessThan(1_100);
      await eventually(async () => {
        const { task } = await c.getTask({ command: "SHORT", taskId });
        return task?.state !== TaskState.TASK_STATE_LEASED;
      }, 4_000);
      expect(Date.now() - deadline).toBeLessThan(2_500);
    } finally {
      await fx.close();
    }
  });
});

/** How many promote calls of the worker failed. */
const promoteFailures = async (fx: ShardFixture) =>
  (await fx.worker.metrics.operationFailures.get()).values.find(
    (v) => v.labels.operation === "promote",
  )?.value ?? 0;

/**
 * Runs `failing` (it makes queues fail, and waits until they have) on a worker whose
 * due loop sleeps up to 3 s; then a task of another queue, due in 300 ms, must be
 * leased about then: the failing queues hold nothing back.
 */
async function otherQueueNotHeldBack(
  failing: (fx: ShardFixture, store: Redis) => Promise<void>,
): Promise<void> {
  const fx = await shardFixture({ dueIdleMs: 3_000 });
  const store = fx.server.client();
  try {
    await failing(fx, store);
    const c = fx.client("t-due");
    const started = Date.now();
    await c.enqueue({ command: "GOOD", delayMs: 300 });
    const got = await c.lease({ commands: ["GOOD"], maxTasks: 1, waitMs: 10_000 });
    expect(got.tasks).toHaveLength(1);
    // promoted when due, not once the failing queues are taken again (dueIdleMs, 3 s)
    expect(Date.now() - started).toBeLessThan(1_500);
  } finally {
    store.disconnect();
    await fx.close();
  }
}

describe("a queue whose promotion keeps failing", () => {
  it("is left out of the due passes, and the other queues' tasks are promoted when due", () =>
    otherQueueNotHeldBack(async (fx, store) => {
      // two queues with a scheduled task whose list the scripts cannot read (WRONGTYPE):
      // due, failing, and alone in their passes (every queue of them failing)
      // (one batch: both due at once, in one pass)
      await fx.client("t-due").enqueueBatch({
        tasks: [
          { command: "BAD1", delayMs: 1_000 },
          { command: "BAD2", delayMs: 1_000 },
        ],
      });
      for (const bad of ["BAD1", "BAD2"]) {
        const [scheduled] = await store.keys(`*{${bad}:t-due:*:scheduled`);
        await store.del(scheduled!);
        await store.set(scheduled!, "not a sorted set");
      }
      await eventually(async () => (await promoteFailures(fx)) >= 2, 5_000); // due, and failing
    }));

  it("holds back no other queue when more of them fail than one due pass takes (100)", () =>
    otherQueueNotHeldBack(async (fx, store) => {
      const bad = Array.from({ length: 105 }, (_, i) => `BAD${i}`);
      await fx.client("t-due").enqueueBatch({
        tasks: bad.map((command) => ({ command, delayMs: 500 })),
      });
      const scheduled = await store.keys("*{BAD*:t-due:*:scheduled");
      expect(scheduled).toHaveLength(bad.length);
      const corrupt = store.multi();
      for (const key of scheduled) corrupt.del(key).set(key, "not a sorted set");
      await corrupt.exec();
      // due at once: the first pass takes 100 of them, which fail and are left out for 3 s
      await eventually(async () => (await promoteFailures(fx)) >= 100, 5_000);
    }));
});
