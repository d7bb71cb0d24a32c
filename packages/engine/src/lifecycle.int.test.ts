import { ScriptCode } from "./errors";
import { engineFixture, payload, Q, type EngineFixture } from "./test/fixture";

let fx: EngineFixture;
beforeAll(async () => (fx = await engineFixture()));
afterAll(() => fx.close());

describe("engine smoke: enqueue → lease → ack", () => {
  it("delivers a task once and completes it", async () => {
    const { engine } = await fx.engine();
    const [out] = await engine.enqueue(Q, [{ payload: payload("hi"), headers: { a: "b" } }]);
    expect(out).toMatchObject({ duplicate: false, state: "READY" });
    const leased = await engine.lease(Q, { max: 10, leaseMs: 30_000 });
    expect(leased).toHaveLength(1);
    expect(leased[0]!.task).toMatchObject({
      id: out!.id,
      attempts: 1,
      state: "LEASED",
      headers: { a: "b" },
    });
    expect(leased[0]!.task.payload.toString()).toBe("hi");
    expect(await engine.ack([{ token: leased[0]!.token, result: payload("done") }])).toEqual([
      { code: ScriptCode.Ok },
    ]);
    expect(await engine.lease(Q, { max: 10, leaseMs: 30_000 })).toEqual([]);
    const task = await engine.getTask(Q, out!.id);
    expect(task).toMatchObject({ state: "COMPLETED", result: payload("done") });
  });
});

describe("a batch whose tasks differ in some fields", () => {
  it("stores each task's own state, whether or not it writes as the one before it", async () => {
    const { engine } = await fx.engine();
    // runs of equal states (written once, then copied) and changes between them
    const specs = [
      { priority: 1 },
      { priority: 1 },
      { priority: 5 },
      { priority: 5, maxAttempts: 3 },
      { priority: 5, maxAttempts: 3 },
      { priority: 5, maxAttempts: 3, delayMs: 60_000 },
      { priority: 5, maxAttempts: 3, delayMs: 60_000 },
      { priority: 5 },
    ];
    const out = await engine.enqueue(
      Q,
      specs.map((s, i) => ({ ...s, payload: payload(String(i)) })),
    );
    const tasks = await Promise.all(out.map((o) => engine.getTask(Q, o.id)));
    expect(
      tasks.map((t) => [t!.payload.toString(), t!.state, t!.priority, t!.maxAttempts]),
    ).toEqual(
      specs.map((s, i) => [
        String(i),
        s.delayMs ? "SCHEDULED" : "READY",
        s.priority,
        s.maxAttempts ?? tasks[0]!.maxAttempts,
      ]),
    );
    const runAt = tasks.map((t) => t!.runAt - tasks[0]!.runAt);
    expect(runAt).toEqual(specs.map((s) => s.delayMs ?? 0));
  });
});

describe("leases taken back without a failure", () => {
  it("a give-back never counts the attempt; an interruption counts only when it repeats the last error", async () => {
    const { engine } = await fx.engine();
    const [out] = await engine.enqueue(Q, [{ payload: payload("long"), maxAttempts: 3 }]);
    const lease = async () => (await engine.lease(Q, { max: 1, leaseMs: 30_000 }))[0]!;
    const task = async () => (await engine.getTask(Q, out!.id))!;

    await engine.giveBack([(await lease()).token]);
    expect(await task()).toMatchObject({ state: "READY", attempts: 0 });
    await engine.interrupt([(await lease()).token], "shut down");
    expect(await task()).toMatchObject({ state: "READY", attempts: 0, lastError: "shut down" });
    // interrupted again with no run in between that ended otherwise: this one counts
    await engine.interrupt([(await lease()).token], "shut down");
    expect(await task()).toMatchObject({ state: "READY", attempts: 1, lastError: "shut down" });
    // a run that failed in between: the next interruption is free again
    await engine.nack([{ token: (await lease()).token, delayMs: 0, error: "boom" }]);
    expect(await task()).toMatchObject({ state: "READY", attempts: 2, lastError: "boom" });
    await engine.interrupt([(await lease()).token], "shut down");
    expect(await task()).toMatchObject({ state: "READY", attempts: 2, lastError: "shut down" });
    // and the one after it counts: on the last attempt, the task goes to the DLQ
    await engine.interrupt([(await lease()).token], "shut down");
    expect(await task()).toMatchObject({ state: "DEAD", attempts: 3 });
  });
});
