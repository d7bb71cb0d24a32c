import { queueKeys } from "../keys";
import { LEASE, Q, seed, useEngineFixture } from "../test/fixture";

const KEPT = { forgotten: false } as const;

describe("cleanup-7.lua, forget-6.lua", () => {
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

  it("keeps a queue while an index still lists an id, until cleanup sweeps it", async () => {
    const { engine, clock, redis, prefix } = await fx().engine({ deadRetentionMs: 1_000 });
    await seed(engine, 1);
    const [d] = await engine.lease(Q, LEASE);
    await engine.ack([{ token: d!.token }]);
    const k = queueKeys(Q, { prefix, layout: "sharded", shard: "a" });
    await redis.hdel(k.state, d!.task.id); // the task itself gone some other way
    // ids a store left behind: one reserved with no task, then one in the dead index
    await redis.zadd(k.moving, 1, "1".repeat(26));
    expect(await engine.cleanup(Q)).toMatchObject({ forgotten: false });
    await redis.zrem(k.moving, "1".repeat(26));
    await redis.zadd(k.dead, clock.now(), "0".repeat(26));
    expect(await engine.cleanup(Q)).toMatchObject({ forgotten: false }); // the dead id stays
    clock.advance(1_001);
    expect(await engine.cleanup(Q)).toMatchObject({ forgotten: true });
    expect(await engine.queues()).toEqual([]);
  });

  it("never forgets a queue whose moved idempotency keys a cleanup saw half bound", async () => {
    const { engine, clock, redis } = await fx().engine();
    const other = { command: "KEYS", tenant: "acme" };
    const set = redis.set.bind(redis);
    let cleaned = false;
    // retention runs while the bind is between its commands
    (redis as unknown as { set: typeof set }).set = (async (...args: Parameters<typeof set>) => {
      if (!cleaned) {
        cleaned = true;
        await engine.cleanup(other);
      }
      return set(...args);
    }) as typeof set;
    const bound = await engine.bindIdempotencyKeys(other, [
      { key: "k", taskId: "0".repeat(26), expiresAt: clock.now() + 60_000 },
    ]);
    expect(bound).toBe(1);
    expect(cleaned).toBe(true);
    expect(await engine.queues("KEYS")).toEqual([other]);
    expect(await engine.cleanup(other)).toMatchObject({ forgotten: false });
  });
});
