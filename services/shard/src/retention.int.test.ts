import type { CleanupOutcome, QueueRef } from "@codeq/engine";
import { eventually, shardFixture, type ShardFixture } from "./test/fixture";

/** Each cleanup pass's calls, by queue, as the background loop made them. */
interface Pass {
  readonly calls: { queue: string; out?: CleanupOutcome; failed?: boolean }[];
}

/** Records the worker's cleanup passes (one `queues()` read opens each) and can fail a queue's calls. */
function watchCleanup(fx: ShardFixture, failFor?: string): Pass[] {
  const engine = fx.worker.engine;
  const passes: Pass[] = [];
  const queues = engine.queues.bind(engine);
  const cleanup = engine.cleanup.bind(engine);
  engine.queues = async (command?: string) => {
    if (command === undefined) passes.push({ calls: [] });
    return queues(command);
  };
  engine.cleanup = async (queue: QueueRef, limit?: number) => {
    const call: Pass["calls"][number] = { queue: queue.tenant };
    passes.at(-1)?.calls.push(call);
    if (queue.tenant === failFor) {
      call.failed = true;
      throw new Error("the store refused this queue's cleanup");
    }
    call.out = await cleanup(queue, limit);
    return call.out;
  };
  return passes;
}

/** Enqueues, leases and acks `n` tasks of RET for `tenant`, leaving them completed. */
async function complete(fx: ShardFixture, tenant: string, n: number): Promise<void> {
  const c = fx.client(tenant);
  await c.enqueueBatch({ tasks: Array.from({ length: n }, () => ({ command: "RET" })) });
  const { tasks } = await c.lease({ commands: ["RET"], maxTasks: n });
  await c.ack({ items: tasks.map((t) => ({ leaseToken: t.leaseToken })) });
}

describe("retention cleanup", () => {
  let fx: ShardFixture | undefined;
  afterEach(async () => {
    await fx?.close();
    fx = undefined;
  });

  it("sweeps a queue again in the same pass while it fills its batch", async () => {
    fx = await shardFixture({ completedRetentionMs: 1, cleanupBatch: 2, cleanupIntervalMs: 100 });
    const passes = watchCleanup(fx);
    await complete(fx, "t1", 7);
    await eventually(async () =>
      passes.some((p) => p.calls.some((c) => (c.out?.completed ?? 0) > 0)),
    );
    const pass = passes.find((p) => p.calls.some((c) => (c.out?.completed ?? 0) > 0))!;
    // 2 + 2 + 2 + 1 in one pass, not 2 a pass
    expect(pass.calls.map((c) => c.out?.completed)).toEqual([2, 2, 2, 1]);
    expect((await fx.client("t1").queueStats({ command: "RET" })).total!.completed).toBe(0);
  });

  it("goes on with the other queues when one queue's cleanup fails", async () => {
    fx = await shardFixture({ completedRetentionMs: 1, cleanupIntervalMs: 100 });
    const passes = watchCleanup(fx, "a-broken");
    await complete(fx, "a-broken", 1);
    await complete(fx, "b-fine", 3);
    await eventually(async () =>
      passes.some((p) => p.calls.some((c) => (c.out?.completed ?? 0) > 0)),
    );
    const pass = passes.find((p) => p.calls.some((c) => (c.out?.completed ?? 0) > 0))!;
    expect(pass.calls).toEqual(
      expect.arrayContaining([
        { queue: "a-broken", failed: true },
        expect.objectContaining({
          queue: "b-fine",
          out: expect.objectContaining({ completed: 3 }),
        }),
      ]),
    );
  });
});
