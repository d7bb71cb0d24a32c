import { LEASE, Q, seed, useEngineFixture } from "../test/fixture";

describe("cleanup-7.lua", () => {
  const fx = useEngineFixture();

  it("deletes completed and dead tasks past their windows, bounded, and forgets expired idempotency keys", async () => {
    const { engine, clock } = await fx().engine({
      completedRetentionMs: 1_000,
      deadRetentionMs: 5_000,
      idempotencyWindowMs: 2_000,
    });
    const ids = await seed(engine, 4);
    await engine.enqueue(Q, [{ idempotencyKey: "k1" }, { idempotencyKey: "k2" }]);
    const leased = await engine.lease(Q, { max: 4, leaseMs: 30_000 });
    await engine.ack(leased.slice(0, 3).map((d) => ({ token: d.token })));
    await engine.nack([{ token: leased[3]!.token, deadLetter: true }]);
    clock.advance(1_000);
    expect(await engine.cleanup(Q)).toEqual({ completed: 0, dead: 0, idempotencyKeys: 0 });
    clock.advance(1_001);
    expect(await engine.cleanup(Q, 2)).toEqual({ completed: 2, dead: 0, idempotencyKeys: 2 });
    expect(await engine.cleanup(Q, 2)).toEqual({ completed: 1, dead: 0, idempotencyKeys: 0 });
    expect(await engine.getTask(Q, ids[0]!)).toBeUndefined();
    clock.advance(5_000);
    expect(await engine.cleanup(Q)).toEqual({ completed: 0, dead: 1, idempotencyKeys: 0 });
    expect(await engine.getTask(Q, ids[3]!)).toBeUndefined();
    expect((await engine.stats(Q)).ready).toBe(2);
  });

  it("does not delete a record that left the state its index says (redriven after dying)", async () => {
    const { engine, clock } = await fx().engine({ deadRetentionMs: 1_000 });
    const [id] = await seed(engine, 1);
    const [d] = await engine.lease(Q, LEASE);
    await engine.nack([{ token: d!.token, deadLetter: true }]);
    await engine.redrive(Q, 1);
    clock.advance(2_000);
    expect(await engine.cleanup(Q)).toMatchObject({ dead: 0 });
    expect(await engine.getTask(Q, id!)).toMatchObject({ state: "READY" });
  });
});
