import { LEASE, payload, Q, seed, useEngineFixture } from "../test/fixture";

describe("lease-17.lua", () => {
  const fx = useEngineFixture();

  it("serves the highest priority first and FIFO within a priority, up to max", async () => {
    const { engine } = await fx().engine();
    const low = await seed(engine, 2, { priority: 1 }, Q, "low");
    const high = await seed(engine, 2, { priority: 9 }, Q, "high");
    const mid = await seed(engine, 1, { priority: 5 }, Q, "mid");
    const first = await engine.lease(Q, { max: 3, leaseMs: 10_000 });
    expect(first.map((d) => d.task.id)).toEqual([...high, ...mid]);
    const rest = await engine.lease(Q, LEASE);
    expect(rest.map((d) => d.task.id)).toEqual(low);
    expect(await engine.lease(Q, LEASE)).toEqual([]);
  });

  it("counts one attempt per delivery and records the lease in the in-flight index", async () => {
    const { engine, clock } = await fx().engine();
    const [id] = await seed(engine, 1);
    const [d] = await engine.lease(Q, { max: 1, leaseMs: 5_000 });
    expect(d!.task).toMatchObject({
      id,
      attempts: 1,
      leaseSeq: 1,
      state: "LEASED",
      leaseDeadline: clock.now() + 5_000,
    });
    expect(d!.deadline).toBe(clock.now() + 5_000);
    expect((await engine.stats(Q)).leased).toBe(1);
    // due just past the deadline: the reaper takes a lease once its deadline is before now
    expect(await engine.nextDueAt()).toBe(clock.now() + 5_001);
    expect(d!.token).toMatch(/^c1~a~SEND_EMAIL~acme~/);
    clock.advance(5_000);
    expect(await engine.dueQueues()).toEqual([]); // at the deadline: nothing to reap yet
    clock.advance(1);
    expect(await engine.dueQueues()).toEqual([Q]);
  });

  it("promotes due scheduled tasks first, in run-at order", async () => {
    const { engine, clock } = await fx().engine();
    const [later] = await engine.enqueue(Q, [{ payload: payload("later"), delayMs: 2_000 }]);
    const [sooner] = await engine.enqueue(Q, [{ payload: payload("sooner"), delayMs: 1_000 }]);
    const [ready] = await seed(engine, 1);
    expect((await engine.lease(Q, LEASE)).map((d) => d.task.id)).toEqual([ready]);
    clock.advance(2_000);
    expect((await engine.lease(Q, LEASE)).map((d) => d.task.id)).toEqual([sooner!.id, later!.id]);
  });

  it("sends a READY task whose attempts are used up to the DLQ instead of delivering it", async () => {
    const { engine, clock } = await fx().engine();
    // an imported task can arrive READY with its attempts used up
    await engine.importTasks(Q, [
      {
        idempotencyExpiresAt: 0,
        task: {
          id: "01JB0000000000000000000000",
          command: Q.command,
          tenant: Q.tenant,
          shard: "b",
          payload: payload("x"),
          priority: 0,
          runAt: clock.now(),
          maxAttempts: 2,
          attempts: 2,
          leaseSeq: 2,
          backoff: { kind: "fixed", baseMs: 10, maxMs: 10, jitter: false },
          createdAt: 1,
          updatedAt: 1,
          state: "READY",
        },
      },
    ]);
    expect(await engine.lease(Q, LEASE)).toEqual([]);
    expect(await engine.getTask(Q, "01JB0000000000000000000000")).toMatchObject({
      state: "DEAD",
      lastError: "attempts exhausted",
    });
  });

  it("refuses out-of-range arguments", async () => {
    const { engine } = await fx().engine();
    await expect(engine.lease(Q, { max: 0, leaseMs: 30_000 })).rejects.toThrow(
      /max tasks must be 1..1000/,
    );
    await expect(engine.lease(Q, { max: 1001, leaseMs: 30_000 })).rejects.toThrow(/max tasks/);
    await expect(engine.lease(Q, { max: 1, leaseMs: 999 })).rejects.toThrow(/lease duration/);
    await expect(engine.lease(Q, { max: 1, leaseMs: 43_200_001 })).rejects.toThrow(
      /lease duration/,
    );
  });
});
