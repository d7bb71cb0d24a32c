import type { CleanupOutcome, QueueRef } from "@codeq/engine";
import { eventually, shardFixture, type ShardFixture } from "./test/fixture";

interface CleanupCall {
  readonly queue: string;
  readonly at: number;
  out?: CleanupOutcome;
  failed?: boolean;
}

/** Records the worker's cleanup calls; those of `failFor`'s queue fail. */
function watchCleanup(fx: ShardFixture, failFor?: string): CleanupCall[] {
  const engine = fx.worker.engine;
  const calls: CleanupCall[] = [];
  const cleanup = engine.cleanup.bind(engine);
  engine.cleanup = async (queue: QueueRef, limit?: number) => {
    const call: CleanupCall = { queue: queue.tenant, at: Date.now() };
    calls.push(call);
    if (queue.tenant === failFor) {
      call.failed = true;
      throw new Error("the store refused this queue's cleanup");
    }
    call.out = await cleanup(queue, limit);
    return call.out;
  };
  return calls;
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
    // passes 2 s apart: calls within one pass come milliseconds apart
    fx = await shardFixture({ completedRetentionMs: 1, cleanupBatch: 2, cleanupIntervalMs: 2_000 });
    const calls = watchCleanup(fx);
    await complete(fx, "t1", 7);
    const sweeping = () => calls.filter((c) => (c.out?.completed ?? 0) > 0);
    await eventually(
      async () => sweeping().reduce((n, c) => n + c.out!.completed, 0) === 7,
      10_000,
    );
    // 2 + 2 + 2 + 1 in one pass, not 2 a pass
    expect(sweeping().map((c) => c.out!.completed)).toEqual([2, 2, 2, 1]);
    expect(sweeping().at(-1)!.at - sweeping()[0]!.at).toBeLessThan(1_000);
    expect((await fx.client("t1").queueStats({ command: "RET" })).total!.completed).toBe(0);
  });

  it("sweeps a bounded part of the registry a pass, and every queue in turn", async () => {
    fx = await shardFixture({ completedRetentionMs: 1, cleanupIntervalMs: 200, cleanupQueues: 50 });
    const engine = fx.worker.engine;
    const pages: number[] = [];
    const queuePage = engine.queuePage.bind(engine);
    engine.queuePage = async (cursor: string, count: number) => {
      const page = await queuePage(cursor, count);
      pages.push(page.queues.length);
      return page;
    };
    const calls = watchCleanup(fx);
    // 300 queues: more than a small set's one-block encoding, so the walk is paged
    const tenants = Array.from({ length: 300 }, (_, i) => `q${String(i).padStart(3, "0")}`);
    for (let i = 0; i < tenants.length; i += 50)
      await Promise.all(tenants.slice(i, i + 50).map((t) => complete(fx!, t, 1)));
    const swept = () => new Set(calls.filter((c) => c.out?.completed === 1).map((c) => c.queue));
    await eventually(async () => swept().size === tenants.length, 20_000);
    // each pass read about its 50 (SSCAN's COUNT is a hint), never the whole registry
    expect(pages.length).toBeGreaterThan(3);
    expect(Math.max(...pages)).toBeLessThan(150);
  }, 30_000);

  it("goes on with the other queues when one queue's cleanup fails", async () => {
    fx = await shardFixture({ completedRetentionMs: 1, cleanupIntervalMs: 100 });
    // queues are swept in order: a-broken's failure comes first in every pass
    const calls = watchCleanup(fx, "a-broken");
    await complete(fx, "a-broken", 1);
    await complete(fx, "b-fine", 3);
    await eventually(async () => calls.some((c) => c.queue === "b-fine" && c.out?.completed === 3));
    expect(calls.some((c) => c.queue === "a-broken" && c.failed)).toBe(true);
  });
});
