import { ScriptCode } from "./errors";
import { engineFixture, payload, Q, type EngineFixture } from "./test/fixture";

describe("engine smoke: enqueue → lease → ack", () => {
  let fx: EngineFixture;
  beforeAll(async () => (fx = await engineFixture()));
  afterAll(() => fx.close());

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
