import { ManualClock } from "../clock";
import { createEngineContext } from "../engine-context";
import { EngineError } from "../errors";
import { TaskIdGenerator } from "../task-id";
import { payload, Q, useEngineFixture } from "../test/fixture";
import { enqueue } from "../enqueue";
import { getTask, stats as queueStats } from "../queue-reads";

describe("enqueue-17.lua", () => {
  const fx = useEngineFixture();

  it("stores READY tasks in their priority list and SCHEDULED ones by run-at", async () => {
    const { engine, clock } = await fx().engine();
    const out = await engine.enqueue(Q, [
      { payload: payload("now"), priority: 3 },
      { payload: payload("later"), delayMs: 5_000 },
      { payload: payload("at"), runAtMs: clock.now() + 1_000 },
      { payload: payload("past"), runAtMs: clock.now() - 1_000 },
    ]);
    expect(out.map((o) => o.state)).toEqual(["READY", "SCHEDULED", "SCHEDULED", "READY"]);
    const stats = await engine.stats(Q);
    expect(stats.readyByPriority[3]).toBe(1);
    expect(stats.readyByPriority[0]).toBe(1);
    expect(stats.scheduled).toBe(2);
    const later = await engine.getTask(Q, out[1]!.id);
    expect(later).toMatchObject({
      state: "SCHEDULED",
      runAt: clock.now() + 5_000,
      attempts: 0,
      maxAttempts: 5,
    });
    expect(await engine.nextDueAt()).toBe(clock.now() + 1_000);
  });

  it("gives time-sortable unique ids", async () => {
    const { engine } = await fx().engine();
    const out = await engine.enqueue(
      Q,
      Array.from({ length: 50 }, () => ({})),
    );
    const ids = out.map((o) => o.id);
    expect(new Set(ids).size).toBe(50);
    expect([...ids].sort()).toEqual(ids);
  });

  it("returns the original task for a repeated idempotency key, within a batch and across calls", async () => {
    const { engine } = await fx().engine();
    const [first, second] = await engine.enqueue(Q, [
      { payload: payload("a"), idempotencyKey: "k" },
      { payload: payload("b"), idempotencyKey: "k" },
    ]);
    expect(first).toMatchObject({ duplicate: false, state: "READY" });
    expect(second).toEqual({ id: first!.id, duplicate: true, state: "READY" });
    const [again] = await engine.enqueue(Q, [{ payload: payload("c"), idempotencyKey: "k" }]);
    expect(again).toEqual({ id: first!.id, duplicate: true, state: "READY" });
    expect((await engine.stats(Q)).ready).toBe(1);
  });

  it("forgets an idempotency key after its window", async () => {
    const { engine } = await fx().engine({ idempotencyWindowMs: 50 });
    const [a] = await engine.enqueue(Q, [{ idempotencyKey: "k" }]);
    await new Promise((r) => setTimeout(r, 120)); // the store expires the key on its own clock
    const [b] = await engine.enqueue(Q, [{ idempotencyKey: "k" }]);
    expect(b!.duplicate).toBe(false);
    expect(b!.id).not.toBe(a!.id);
  });

  it("refuses a bad item and stores nothing of the batch", async () => {
    const { engine } = await fx().engine();
    const bad = [
      [{ priority: 10 }, /tasks\[1\]: priority must be an integer 0..9/],
      [{ priority: -1 }, /priority/],
      [{ delayMs: 5, runAtMs: 5 }, /delayMs or runAtMs/],
      [{ maxAttempts: 1001 }, /maxAttempts/],
      [{ backoff: { kind: "fixed", baseMs: 100, maxMs: 50 } }, /backoff.maxMs/],
      [{ idempotencyKey: "x".repeat(257) }, /idempotencyKey/],
      [
        { headers: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`h${i}`, "v"])) },
        /headers/,
      ],
    ] as const;
    for (const [spec, message] of bad) {
      await expect(engine.enqueue(Q, [{}, spec as never])).rejects.toThrow(message);
    }
    await expect(
      engine.enqueue(Q, [{ payload: Buffer.alloc(1024 * 1024 + 1) }]),
    ).rejects.toMatchObject({
      kind: "RESOURCE_EXHAUSTED",
    });
    await expect(engine.enqueue({ command: "bad:name", tenant: "t" }, [{}])).rejects.toBeInstanceOf(
      EngineError,
    );
    await expect(engine.enqueue({ command: "C", tenant: "{x}" }, [{}])).rejects.toThrow(
      /tenant must match/,
    );
    const stats = await engine.stats(Q);
    expect(stats.ready + stats.scheduled).toBe(0);
  });

  it("registers the queue on the shard", async () => {
    const { engine } = await fx().engine();
    await engine.enqueue({ command: "C1", tenant: "t1" }, [{}]);
    await engine.enqueue({ command: "C1", tenant: "t2" }, [{}]);
    await engine.enqueue({ command: "C2", tenant: "t1" }, [{}]);
    expect(await engine.queues("C1")).toEqual([
      { command: "C1", tenant: "t1" },
      { command: "C1", tenant: "t2" },
    ]);
    expect(await engine.queues()).toHaveLength(3);
  });

  it("reports an item whose id exists as stored, once: a script re-sent after a reconnect", async () => {
    const { redis, prefix } = await fx().engine();
    const ctx = await createEngineContext(redis, {
      shard: "a",
      keyPrefix: prefix,
      clock: new ManualClock(),
    });
    const [stored] = await enqueue(ctx, Q, [{ payload: payload("first") }]);
    // the replay carries the same id (ioredis re-sends the very command)
    const replay = { next: () => stored!.id };
    const out = await enqueue({ ...ctx, ids: replay as unknown as TaskIdGenerator }, Q, [
      { payload: payload("first") },
    ]);
    expect(out).toEqual([{ id: stored!.id, duplicate: false, state: "READY" }]);
    expect((await getTask(ctx, Q, stored!.id))?.payload.toString()).toBe("first");
    expect((await queueStats(ctx, Q)).ready).toBe(1);
  });
});
