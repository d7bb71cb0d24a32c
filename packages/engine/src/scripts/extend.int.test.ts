import { ScriptCode } from "../errors";
import { LEASE, Q, seed, useEngineFixture } from "../test/fixture";

describe("extend-3.lua", () => {
  const fx = useEngineFixture();

  it("moves the deadline to now + duration (default: the leased duration) in the record and the index", async () => {
    const { engine, clock } = await fx().engine();
    const [id] = await seed(engine, 1);
    const [d] = await engine.lease(Q, { max: 1, leaseMs: 4_000 });
    clock.advance(3_000);
    expect(await engine.extend([{ token: d!.token }])).toEqual([
      { code: ScriptCode.Ok, deadline: clock.now() + 4_000 },
    ]);
    expect(await engine.extend([{ token: d!.token, leaseMs: 60_000 }])).toEqual([
      { code: ScriptCode.Ok, deadline: clock.now() + 60_000 },
    ]);
    clock.advance(30_000);
    expect(await engine.reap(Q)).toMatchObject({ reaped: 0, dead: 0 });
    expect(await engine.getTask(Q, id!)).toMatchObject({ state: "LEASED", leaseMs: 60_000 });
  });

  it("refuses an expired lease and does not revive it", async () => {
    const { engine, clock } = await fx().engine();
    const [id] = await seed(engine, 1);
    const [d] = await engine.lease(Q, { max: 1, leaseMs: 1_000 });
    clock.advance(1_001);
    expect(await engine.extend([{ token: d!.token }])).toEqual([{ code: ScriptCode.LeaseExpired }]);
    expect(await engine.getTask(Q, id!)).toMatchObject({
      state: "LEASED",
      leaseDeadline: d!.deadline,
    });
    expect(await engine.reap(Q)).toMatchObject({ reaped: 1, dead: 0 });
    expect(await engine.extend([{ token: d!.token }])).toEqual([{ code: ScriptCode.StaleLease }]);
  });

  it("refuses stale and unknown tokens, and durations out of range", async () => {
    const { engine } = await fx().engine();
    await seed(engine, 1);
    const [first] = await engine.lease(Q, LEASE);
    await engine.release([first!.token]);
    await engine.lease(Q, LEASE);
    expect(await engine.extend([{ token: first!.token }, { token: "x" }])).toEqual([
      { code: ScriptCode.StaleLease },
      { code: ScriptCode.NotFound },
    ]);
    await expect(engine.extend([{ token: first!.token, leaseMs: 10 }])).rejects.toThrow(
      /lease duration/,
    );
  });

  it("a shorter lease brings the queue's due time forward, so the reaper is not late", async () => {
    const { engine, clock } = await fx().engine();
    await seed(engine, 1);
    const [d] = await engine.lease(Q, { max: 1, leaseMs: 5_000 });
    expect(await engine.extend([{ token: d!.token, leaseMs: 1_000 }])).toEqual([
      { code: ScriptCode.Ok, deadline: clock.now() + 1_000 },
    ]);
    expect(await engine.nextDueAt()).toBe(clock.now() + 1_001); // reapable just past the deadline
    clock.advance(1_001);
    expect(await engine.dueQueues()).toEqual([Q]);
  });
});
