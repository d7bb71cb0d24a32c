import { LEASE, payload, Q, seed, useEngineFixture } from "../test/fixture";

describe("enqueue-lease-19.lua", () => {
  const fx = useEngineFixture();

  it("stores the batch, then leases the queue's ready tasks highest priority first", async () => {
    const { engine, clock } = await fx().engine();
    const [older] = await seed(engine, 1, { priority: 7 }, Q, "older");
    const { outcomes, deliveries, readyLeft } = await engine.enqueueAndLease(
      Q,
      [
        { payload: payload("low") },
        { payload: payload("high"), priority: 9 },
        { payload: payload("later"), delayMs: 5_000 },
      ],
      { max: 2, leaseMs: 10_000 },
    );
    expect(outcomes.map((o) => o.state)).toEqual(["READY", "READY", "SCHEDULED"]);
    expect(readyLeft).toBe(1);
    expect(deliveries.map((d) => d.task.payload.toString())).toEqual(["high", "older0"]);
    expect(deliveries.map((d) => d.task.id)).toEqual([outcomes[1]!.id, older]);
    for (const d of deliveries) {
      expect(d.task).toMatchObject({ state: "LEASED", attempts: 1, leaseSeq: 1 });
      expect(d.deadline).toBe(clock.now() + 10_000);
    }
    // the one not leased is still ready, the scheduled one still waits
    const rest = await engine.lease(Q, LEASE);
    expect(rest.map((d) => d.task.id)).toEqual([outcomes[0]!.id]);
    expect(await engine.stats(Q)).toMatchObject({ ready: 0, scheduled: 1, leased: 3 });
    // the tokens settle like any lease's
    const acked = await engine.ack(deliveries.map((d) => ({ token: d.token })));
    expect(acked.map((a) => a.code)).toEqual([0, 0]);
  });

  it("leases nothing when the batch has nothing ready, and a live idempotency key is not stored twice", async () => {
    const { engine } = await fx().engine();
    const first = await engine.enqueueAndLease(
      Q,
      [{ payload: payload("a"), idempotencyKey: "k1" }],
      { max: 5, leaseMs: 10_000 },
    );
    expect(first.deliveries.map((d) => d.task.id)).toEqual([first.outcomes[0]!.id]);
    expect(first.readyLeft).toBe(0);
    const again = await engine.enqueueAndLease(
      Q,
      [
        { payload: payload("a"), idempotencyKey: "k1" },
        { payload: payload("b"), delayMs: 1_000 },
      ],
      { max: 5, leaseMs: 10_000 },
    );
    expect(again.outcomes[0]).toMatchObject({
      id: first.outcomes[0]!.id,
      duplicate: true,
      state: "LEASED",
    });
    expect(again.deliveries).toEqual([]);
    expect(await engine.stats(Q)).toMatchObject({ ready: 0, scheduled: 1, leased: 1 });
  });

  it("on a queue with nothing ready, leases the batch's own tasks by priority and lists only the rest", async () => {
    const { engine, clock } = await fx().engine();
    const { outcomes, deliveries, readyLeft } = await engine.enqueueAndLease(
      Q,
      [
        { payload: payload("low") },
        { payload: payload("high"), priority: 9 },
        { payload: payload("mid"), priority: 7 },
        { payload: payload("low2") },
        { payload: payload("mid2"), priority: 7 },
      ],
      { max: 3, leaseMs: 10_000 },
    );
    expect(deliveries.map((d) => d.task.payload.toString())).toEqual(["high", "mid", "mid2"]);
    for (const d of deliveries) {
      expect(d.task).toMatchObject({
        state: "LEASED",
        attempts: 1,
        leaseSeq: 1,
        runAt: clock.now(),
      });
      expect(d.deadline).toBe(clock.now() + 10_000);
    }
    // exactly what is left, not an upper bound: the ready lists were empty before
    expect(readyLeft).toBe(2);
    expect(await engine.stats(Q)).toMatchObject({ ready: 2, leased: 3 });
    const rest = await engine.lease(Q, LEASE);
    expect(rest.map((d) => d.task.id)).toEqual([outcomes[0]!.id, outcomes[3]!.id]);
    // handed-over leases are on the reaper's index like any other: they expire, and
    // their tokens are then stale
    clock.advance(10_001);
    expect(await engine.reap(Q, 100)).toMatchObject({ reaped: 3, dead: 0 });
    expect(await engine.stats(Q)).toMatchObject({ leased: 2 });
    expect(
      (await engine.ack(deliveries.map((d) => ({ token: d.token })))).map((a) => a.code),
    ).toEqual([-2, -2, -2]);
  });

  it("promotes a due scheduled task first, even when nothing is ready", async () => {
    const { engine, clock } = await fx().engine();
    const [due] = await seed(engine, 1, { delayMs: 1_000, priority: 9 }, Q, "due");
    clock.advance(1_000);
    const { outcomes, deliveries, readyLeft } = await engine.enqueueAndLease(
      Q,
      [{ payload: payload("new") }],
      { max: 1, leaseMs: 10_000 },
    );
    expect(deliveries.map((d) => d.task.id)).toEqual([due]);
    expect(readyLeft).toBe(1);
    expect((await engine.lease(Q, LEASE)).map((d) => d.task.id)).toEqual([outcomes[0]!.id]);
  });

  it("delivers an older ready task of any priority before the batch", async () => {
    for (let priority = 0; priority <= 9; priority++) {
      const { engine } = await fx().engine();
      const [older] = await seed(engine, 1, { priority }, Q, "older");
      const { outcomes, deliveries, readyLeft } = await engine.enqueueAndLease(
        Q,
        [{ payload: payload("new") }],
        { max: 1, leaseMs: 10_000 },
      );
      expect({ priority, delivered: deliveries.map((d) => d.task.id) }).toEqual({
        priority,
        delivered: [older],
      });
      expect(readyLeft).toBe(1);
      expect((await engine.lease(Q, LEASE)).map((d) => d.task.id)).toEqual([outcomes[0]!.id]);
    }
  });

  it("hands over each task with its own payload and record, past a duplicate in the batch", async () => {
    const { engine } = await fx().engine();
    const first = await engine.enqueueAndLease(
      Q,
      [{ payload: payload("a"), idempotencyKey: "k1" }],
      {
        max: 1,
        leaseMs: 10_000,
      },
    );
    expect(first.deliveries[0]!.task).toMatchObject({ idemKey: "k1" });
    const { outcomes, deliveries, readyLeft } = await engine.enqueueAndLease(
      Q,
      [
        { payload: payload("again"), idempotencyKey: "k1" },
        { payload: payload("x"), headers: { h: "1" } },
        { payload: payload("y"), priority: 3, idempotencyKey: "k2" },
        { payload: payload("z") },
      ],
      { max: 2, leaseMs: 10_000 },
    );
    expect(outcomes.map((o) => o.duplicate)).toEqual([true, false, false, false]);
    expect(
      deliveries.map((d) => [d.task.payload.toString(), d.task.headers, d.task.idemKey]),
    ).toEqual([
      ["y", undefined, "k2"],
      ["x", { h: "1" }, undefined],
    ]);
    expect(readyLeft).toBe(1);
    expect((await engine.lease(Q, LEASE)).map((d) => d.task.payload.toString())).toEqual(["z"]);
  });

  it("refuses a bad lease ask before storing anything", async () => {
    const { engine } = await fx().engine();
    await expect(
      engine.enqueueAndLease(Q, [{ payload: payload("a") }], { max: 0, leaseMs: 10_000 }),
    ).rejects.toThrow(/max tasks must be 1..1000/);
    await expect(
      engine.enqueueAndLease(Q, [{ payload: payload("a") }], { max: 1, leaseMs: 10 }),
    ).rejects.toThrow(/lease duration/);
    expect(await engine.stats(Q)).toMatchObject({ ready: 0, leased: 0 });
  });
});
