import { ScriptCode } from "../errors";
import { Q, seed, useEngineFixture } from "../test/fixture";

const fixed = { kind: "fixed", baseMs: 500, maxMs: 500, jitter: false } as const;

describe("reap-16.lua", () => {
  const fx = useEngineFixture();

  it("takes back only leases whose deadline is strictly before now, as failed attempts with backoff", async () => {
    const { engine, clock } = await fx().engine();
    const [a, b] = await seed(engine, 2, { backoff: fixed });
    await engine.lease(Q, { max: 1, leaseMs: 1_000 });
    await engine.lease(Q, { max: 1, leaseMs: 2_000 });
    clock.advance(1_000);
    expect(await engine.reap(Q)).toEqual({ reaped: 0, dead: 0, ready: 0 }); // deadline == now is still live
    clock.advance(1);
    expect(await engine.dueQueues()).toEqual([Q]);
    expect(await engine.reap(Q)).toEqual({ reaped: 1, dead: 0, ready: 0 });
    expect(await engine.getTask(Q, a!)).toMatchObject({
      state: "SCHEDULED",
      runAt: clock.now() + 500,
      lastError: "lease expired",
      attempts: 1,
    });
    expect(await engine.getTask(Q, b!)).toMatchObject({ state: "LEASED" });
  });

  it("dead-letters on the last attempt and keeps the due index exact", async () => {
    const { engine, clock } = await fx().engine();
    const [id] = await seed(engine, 1, { maxAttempts: 1 });
    await engine.lease(Q, { max: 1, leaseMs: 1_000 });
    clock.advance(1_001);
    expect(await engine.reap(Q)).toEqual({ reaped: 1, dead: 1, ready: 0 });
    expect(await engine.getTask(Q, id!)).toMatchObject({
      state: "DEAD",
      lastError: "lease expired",
    });
    expect(await engine.nextDueAt()).toBeUndefined();
    expect(await engine.dueQueues()).toEqual([]);
  });

  it("counts the tasks it made ready at once (a zero backoff) apart from those it scheduled", async () => {
    const { engine, clock } = await fx().engine();
    const now = { kind: "fixed", baseMs: 0, maxMs: 0, jitter: false } as const;
    await seed(engine, 2, { backoff: now });
    await seed(engine, 1, { backoff: fixed });
    await engine.lease(Q, { max: 3, leaseMs: 1_000 });
    clock.advance(1_001);
    expect(await engine.reap(Q)).toEqual({ reaped: 3, dead: 0, ready: 2 });
    expect(await engine.stats(Q)).toMatchObject({ ready: 2, scheduled: 1 });
  });

  it("is bounded per call, oldest deadline first, and drops index entries of tasks no longer leased", async () => {
    const { engine, clock, redis, prefix } = await fx().engine();
    await seed(engine, 5, { backoff: fixed });
    for (let i = 0; i < 5; i++) {
      await engine.lease(Q, { max: 1, leaseMs: 1_000 + i });
    }
    const leasedKey = `${prefix}:q:{SEND_EMAIL:acme:s:a}:leased`;
    await redis.zadd(leasedKey, 0, "01JB0000000000000000000000"); // an orphan index entry
    clock.advance(10_000);
    expect(await engine.reap(Q, 3)).toMatchObject({ reaped: 2, dead: 0 });
    expect(await redis.zscore(leasedKey, "01JB0000000000000000000000")).toBeNull();
    expect(await engine.reap(Q, 3)).toMatchObject({ reaped: 3, dead: 0 });
    expect((await engine.stats(Q)).leased).toBe(0);
  });

  it("after a reap, the old token is refused everywhere", async () => {
    const { engine, clock } = await fx().engine();
    await seed(engine, 1, { backoff: fixed });
    const [d] = await engine.lease(Q, { max: 1, leaseMs: 1_000 });
    clock.advance(2_000);
    await engine.reap(Q);
    expect((await engine.ack([{ token: d!.token }]))[0]!.code).toBe(ScriptCode.StaleLease);
    expect((await engine.nack([{ token: d!.token }]))[0]!.code).toBe(ScriptCode.StaleLease);
  });
});
