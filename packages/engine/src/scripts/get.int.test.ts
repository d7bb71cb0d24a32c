import { LEASE, payload, Q, useEngineFixture } from "../test/fixture";

describe("get-4.lua", () => {
  const fx = useEngineFixture();

  it("reads a task with its payload, and nothing of another queue or tenant", async () => {
    const { engine, clock } = await fx().engine();
    const [t] = await engine.enqueue(Q, [
      { payload: payload("p"), priority: 4, idempotencyKey: "k", headers: { h: "v" } },
    ]);
    expect(await engine.getTask(Q, t!.id)).toMatchObject({
      id: t!.id,
      command: Q.command,
      tenant: Q.tenant,
      shard: "a",
      payload: payload("p"),
      priority: 4,
      idemKey: "k",
      headers: { h: "v" },
      state: "READY",
      createdAt: clock.now(),
    });
    expect(await engine.getTask({ ...Q, tenant: "other" }, t!.id)).toBeUndefined();
    expect(await engine.getTask({ ...Q, command: "OTHER" }, t!.id)).toBeUndefined();
    expect(await engine.getTask(Q, "01JB0000000000000000000000")).toBeUndefined();
    await engine.lease(Q, LEASE);
    expect(await engine.getTask(Q, t!.id)).toMatchObject({ state: "LEASED", attempts: 1 });
  });
});
