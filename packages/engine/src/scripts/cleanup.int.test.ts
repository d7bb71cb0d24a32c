import { LEASE, Q, seed, useEngineFixture } from "../test/fixture";

const KEPT = { forgotten: false } as const;

describe("cleanup-9.lua", () => {
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
    expect(await engine.cleanup(Q)).toEqual({ completed: 0, dead: 0, idempotencyKeys: 0, ...KEPT });
    clock.advance(1_001);
    expect(await engine.cleanup(Q, 2)).toEqual({
      completed: 2,
      dead: 0,
      idempotencyKeys: 2,
      ...KEPT,
    });
    expect(await engine.cleanup(Q, 2)).toEqual({
      completed: 1,
      dead: 0,
      idempotencyKeys: 0,
      ...KEPT,
    });
    expect(await engine.getTask(Q, ids[0]!)).toBeUndefined();
    clock.advance(5_000);
    expect(await engine.cleanup(Q)).toEqual({ completed: 0, dead: 1, idempotencyKeys: 0, ...KEPT });
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

  it("takes a queue out of the registry once it holds nothing, and an enqueue puts it back", async () => {
    const { engine, clock } = await fx().engine({
      completedRetentionMs: 1_000,
      deadRetentionMs: 2_000,
      idempotencyWindowMs: 3_000,
    });
    const other = { command: "OTHER", tenant: "acme" };
    await seed(engine, 1, {}, other); // never touched: stays
    await seed(engine, 2);
    await engine.enqueue(Q, [{ idempotencyKey: "k" }]);
    const [a, b, c] = await engine.lease(Q, LEASE);
    await engine.ack([{ token: a!.token }, { token: c!.token }]);
    await engine.nack([{ token: b!.token, deadLetter: true }]);
    const registered = async () => (await engine.queues()).map((q) => q.command).sort();
    expect(await registered()).toEqual(["OTHER", "SEND_EMAIL"]);
    clock.advance(1_001); // completed ones go; the dead one and the key stay
    expect(await engine.cleanup(Q)).toMatchObject({ completed: 2, forgotten: false });
    clock.advance(1_000); // the dead one goes; the key stays
    expect(await engine.cleanup(Q)).toMatchObject({ dead: 1, forgotten: false });
    expect(await registered()).toEqual(["OTHER", "SEND_EMAIL"]);
    clock.advance(1_000); // the key expires: nothing left
    expect(await engine.cleanup(Q)).toEqual({
      completed: 0,
      dead: 0,
      idempotencyKeys: 1,
      forgotten: true,
    });
    expect(await registered()).toEqual(["OTHER"]);
    expect(await engine.cleanup(Q)).toMatchObject({ forgotten: false }); // already out
    expect(await engine.cleanup(other)).toMatchObject({ forgotten: false });
    await seed(engine, 1);
    expect(await registered()).toEqual(["OTHER", "SEND_EMAIL"]);
  });

  it("keeps a queue whose only task is leased, or reserved by the mover", async () => {
    const { engine } = await fx().engine();
    await seed(engine, 1);
    await engine.lease(Q, LEASE);
    expect(await engine.cleanup(Q)).toMatchObject({ forgotten: false });
    const moving = { command: "MOVING", tenant: "acme" };
    await seed(engine, 1, {}, moving);
    expect(await engine.exportBatch(moving, 10)).toHaveLength(1);
    expect(await engine.cleanup(moving)).toMatchObject({ forgotten: false });
    expect((await engine.queues()).map((q) => q.command).sort()).toEqual(["MOVING", "SEND_EMAIL"]);
  });
});
