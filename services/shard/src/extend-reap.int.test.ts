import { setTimeout as sleep } from "node:timers/promises";
import { TaskState } from "@codeq/proto";
import { eventually, shardFixture } from "./test/fixture";

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
