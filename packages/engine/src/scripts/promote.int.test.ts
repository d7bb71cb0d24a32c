import { MAX_CLEANUP_BATCH } from "../engine";
import { MAX_BATCH } from "../lease-options";
import { payload, Q, useEngineFixture } from "../test/fixture";

describe("promote-14.lua", () => {
  const fx = useEngineFixture();

  it("makes due scheduled tasks ready in run-at order, bounded, and keeps the due index exact", async () => {
    const { engine, clock } = await fx().engine();
    const out = await engine.enqueue(Q, [
      { payload: payload("3"), delayMs: 3_000 },
      { payload: payload("1"), delayMs: 1_000 },
      { payload: payload("2"), delayMs: 2_000 },
      { payload: payload("9"), delayMs: 9_000 },
    ]);
    expect(await engine.promote(Q)).toBe(0);
    clock.advance(3_000);
    expect(await engine.dueQueues()).toEqual([Q]);
    expect(await engine.promote(Q, 2)).toBe(2);
    expect(await engine.promote(Q, 2)).toBe(1);
    expect(await engine.nextDueAt()).toBe(clock.now() + 6_000);
    const leased = await engine.lease(Q, { max: 10, leaseMs: 30_000 });
    expect(leased.map((d) => d.task.payload.toString())).toEqual(["1", "2", "3"]);
    expect(await engine.getTask(Q, out[3]!.id)).toMatchObject({ state: "SCHEDULED" });
  });

  it("never pushes an id whose record is not SCHEDULED", async () => {
    const { engine, clock, redis, prefix } = await fx().engine();
    const [t] = await engine.enqueue(Q, [{ delayMs: 1_000 }]);
    const scheduled = `${prefix}:q:{SEND_EMAIL:acme:s:a}:scheduled`;
    clock.advance(1_000);
    expect(await engine.promote(Q)).toBe(1);
    await redis.zadd(scheduled, 0, t!.id); // a duplicate index entry for a task that is READY now
    expect(await engine.promote(Q)).toBe(0);
    expect((await engine.stats(Q)).ready).toBe(1);
  });

  it("refuses a limit past what one script call carries, before anything changes (promote, reap, cleanup)", async () => {
    const { engine, clock } = await fx().engine();
    await engine.enqueue(
      Q,
      Array.from({ length: 1000 }, () => ({ delayMs: 1_000 })),
    );
    await engine.enqueue(
      Q,
      Array.from({ length: 500 }, () => ({ delayMs: 1_000 })),
    );
    clock.advance(1_000);
    for (const call of [
      () => engine.promote(Q, MAX_BATCH + 1),
      () => engine.reap(Q, MAX_BATCH + 1),
      () => engine.cleanup(Q, MAX_CLEANUP_BATCH + 1),
      () => engine.promote(Q, 0),
    ])
      await expect(call()).rejects.toThrow(/limit must be 1\.\./);
    expect(await engine.stats(Q)).toMatchObject({ scheduled: 1500, ready: 0 });
    // the most per call is fine, and what is left comes on the next
    expect(await engine.promote(Q, MAX_BATCH)).toBe(1000);
    expect(await engine.promote(Q, MAX_BATCH)).toBe(500);
    expect(await engine.stats(Q)).toMatchObject({ scheduled: 0, ready: 1500 });
  });

  it("a lease that promotes due tasks says how many of them it left ready", async () => {
    const told: Array<[string, number]> = [];
    const { engine, clock } = await fx().engine({
      onTasksLeftReady: (queue: { tenant: string }, n: number) => told.push([queue.tenant, n]),
    });
    await engine.enqueue(Q, [{ payload: payload("ready") }]);
    await engine.enqueue(
      Q,
      Array.from({ length: 3 }, () => ({ delayMs: 1_000 })),
    );
    // nothing due: nothing to say
    expect(await engine.lease(Q, { max: 1, leaseMs: 30_000 })).toHaveLength(1);
    expect(told).toEqual([]);
    clock.advance(1_000);
    // three promoted, one taken: two left
    expect(await engine.lease(Q, { max: 1, leaseMs: 30_000 })).toHaveLength(1);
    expect(told).toEqual([[Q.tenant, 2]]);
    // none promoted this time, though two are ready: they were told of already
    expect(await engine.lease(Q, { max: 1, leaseMs: 30_000 })).toHaveLength(1);
    expect(told).toHaveLength(1);
  });
});
