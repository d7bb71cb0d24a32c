import { ScriptCode } from "./errors";
import { LEASE, Q, seed, useEngineFixture } from "./test/fixture";

/** Failures seen in an earlier queue of this design; each must stay impossible. */
describe("regressions", () => {
  const fx = useEngineFixture();

  it("an ack racing a reap never brings a completed task back to ready or to the DLQ", async () => {
    // two engines on two connections over the same keys: the race crosses connections
    const { engine: acker, clock, prefix } = await fx().engine();
    const { engine: reaper } = await fx().engine({ keyPrefix: prefix, clock });
    let acked = 0;
    for (let round = 0; round < 40; round++) {
      const [id] = await seed(acker, 1, { maxAttempts: 1 });
      const [d] = await acker.lease(Q, { max: 1, leaseMs: 1_000 });
      clock.advance(1_001);
      // alternate which call leaves first so both orders happen
      const reapFirst = round % 2 === 1 ? reaper.reap(Q) : undefined;
      const ackCall = acker.ack([{ token: d!.token }]);
      const [[ack], reaped] = await Promise.all([ackCall, reapFirst ?? reaper.reap(Q)]);
      const task = await acker.getTask(Q, id!);
      if (ack!.code === ScriptCode.Ok) {
        acked++;
        expect(task!.state).toBe("COMPLETED");
        expect(reaped).toMatchObject({ reaped: 0, dead: 0 });
      } else {
        expect(ack!.code).toBe(ScriptCode.StaleLease);
        expect(reaped).toMatchObject({ reaped: 1, dead: 1 });
        expect(task!.state).toBe("DEAD");
      }
      // nothing later changes a settled task
      clock.advance(10_000);
      await Promise.all([reaper.reap(Q), reaper.promote(Q)]);
      expect((await acker.getTask(Q, id!))!.state).toBe(task!.state);
    }
    const stats = await acker.stats(Q);
    expect(acked).toBeGreaterThan(0);
    expect(acked).toBeLessThan(40);
    expect(stats.completed).toBe(acked);
    expect(stats.dead).toBe(40 - acked);
    expect(stats.ready + stats.scheduled + stats.leased).toBe(0);
  });

  it("a scheduled task promoted twice concurrently is in the ready list once; a completed task is never leased again", async () => {
    const { engine, clock, redis, prefix } = await fx().engine();
    const [t] = await engine.enqueue(Q, [{ delayMs: 1_000 }]);
    clock.advance(1_000);
    const results = await Promise.all([engine.promote(Q), engine.promote(Q), engine.promote(Q)]);
    expect(results.reduce((a, b) => a + b, 0)).toBe(1);
    expect(await redis.llen(`${prefix}:q:{SEND_EMAIL:acme:s:a}:ready:0`)).toBe(1);
    const [d] = await engine.lease(Q, LEASE);
    await engine.ack([{ token: d!.token }]);
    clock.advance(60_000);
    await Promise.all([engine.promote(Q), engine.reap(Q)]);
    expect(await engine.lease(Q, LEASE)).toEqual([]);
    expect((await engine.getTask(Q, t!.id))!.state).toBe("COMPLETED");
  });

  it("a task stored with a record (idempotency key, headers) retries by the default backoff, jitter included", async () => {
    const { engine, clock } = await fx().engine({ random: () => 0 });
    const [plain, keyed, headed] = await engine.enqueue(Q, [
      {},
      { idempotencyKey: "k-backoff" },
      { headers: { trace: "t" } },
    ]);
    const leased = await engine.lease(Q, { ...LEASE, max: 3 });
    expect(leased).toHaveLength(3);
    await engine.nack(leased.map((d) => ({ token: d.token })));
    const runAt = async (id: string) => (await engine.getTask(Q, id))!.runAt - clock.now();
    const delays = [await runAt(plain!.id), await runAt(keyed!.id), await runAt(headed!.id)];
    // the default policy (1 s, exponential, equal jitter) for all three: between half
    // the delay and the delay, never the delay exactly (as with no jitter)
    for (const delay of delays) {
      expect(delay).toBeGreaterThanOrEqual(500);
      expect(delay).toBeLessThan(1_000);
    }
  });

  it("attempts are counted once per delivery, not again on nack", async () => {
    const { engine } = await fx().engine();
    const [id] = await seed(engine, 1, { maxAttempts: 3 });
    for (let delivery = 1; delivery <= 2; delivery++) {
      const [d] = await engine.lease(Q, LEASE);
      expect(d!.task.attempts).toBe(delivery);
      await engine.nack([{ token: d!.token, delayMs: 0 }]);
      expect((await engine.getTask(Q, id!))!.attempts).toBe(delivery);
    }
    const [third] = await engine.lease(Q, LEASE);
    expect(third!.task.attempts).toBe(3);
    await engine.nack([{ token: third!.token, delayMs: 0 }]);
    expect(await engine.getTask(Q, id!)).toMatchObject({ attempts: 3, state: "DEAD" });
  });

  it("extending an expired lease fails and does not revive it; a stale ack after reap and re-lease is refused", async () => {
    const { engine, clock } = await fx().engine();
    const [id] = await seed(engine, 1, {
      backoff: { kind: "fixed", baseMs: 0, maxMs: 0, jitter: false },
    });
    const [old] = await engine.lease(Q, { max: 1, leaseMs: 1_000 });
    clock.advance(1_500);
    expect(await engine.extend([{ token: old!.token, leaseMs: 60_000 }])).toEqual([
      { code: ScriptCode.LeaseExpired },
    ]);
    expect(await engine.reap(Q)).toMatchObject({ reaped: 1, dead: 0 });
    const [current] = await engine.lease(Q, LEASE);
    expect(current!.task.id).toBe(id);
    expect(await engine.ack([{ token: old!.token }])).toEqual([{ code: ScriptCode.StaleLease }]);
    expect(await engine.extend([{ token: old!.token }])).toEqual([{ code: ScriptCode.StaleLease }]);
    expect(await engine.getTask(Q, id!)).toMatchObject({ state: "LEASED", leaseSeq: 2 });
    expect(await engine.ack([{ token: current!.token }])).toEqual([{ code: ScriptCode.Ok }]);
  });

  it("idempotency keys of two tenants never collide", async () => {
    const { engine } = await fx().engine();
    const [a] = await engine.enqueue({ command: "C", tenant: "alice" }, [
      { idempotencyKey: "order-1" },
    ]);
    const [b] = await engine.enqueue({ command: "C", tenant: "bob" }, [
      { idempotencyKey: "order-1" },
    ]);
    expect(a!.duplicate).toBe(false);
    expect(b!.duplicate).toBe(false);
    expect(b!.id).not.toBe(a!.id);
    expect(await engine.getTask({ command: "C", tenant: "bob" }, a!.id)).toBeUndefined();
  });

  it("nack with delay 0 makes the task ready immediately (not its backoff)", async () => {
    const { engine } = await fx().engine();
    const [id] = await seed(engine, 1, {
      backoff: { kind: "fixed", baseMs: 60_000, maxMs: 60_000, jitter: false },
    });
    const [d] = await engine.lease(Q, LEASE);
    await engine.nack([{ token: d!.token, delayMs: 0 }]);
    expect(await engine.getTask(Q, id!)).toMatchObject({ state: "READY" });
    expect((await engine.lease(Q, LEASE)).map((x) => x.task.id)).toEqual([id]);
  });
});
