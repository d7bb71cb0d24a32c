import { Q, seed, useEngineFixture } from "../test/fixture";

describe("stats-15.lua", () => {
  const fx = useEngineFixture();

  it("counts every state of one queue", async () => {
    const { engine } = await fx().engine();
    await seed(engine, 3, { priority: 2 });
    await seed(engine, 2, { priority: 7 });
    await seed(engine, 1, { delayMs: 1_000 });
    const leased = await engine.lease(Q, { max: 3, leaseMs: 30_000 });
    await engine.ack([{ token: leased[0]!.token }]);
    await engine.nack([{ token: leased[1]!.token, deadLetter: true }]);
    await engine.exportBatch(Q, 1);
    const stats = await engine.stats(Q);
    expect(stats).toEqual({
      readyByPriority: [0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
      ready: 1,
      scheduled: 1,
      leased: 1,
      dead: 1,
      completed: 1,
      moving: 1,
    });
    expect(await engine.stats({ ...Q, tenant: "nobody" })).toMatchObject({ ready: 0, leased: 0 });
  });
});
