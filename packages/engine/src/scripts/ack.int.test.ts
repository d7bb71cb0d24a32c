import { ScriptCode } from "../errors";
import { LEASE, payload, Q, seed, useEngineFixture } from "../test/fixture";

describe("ack-6.lua", () => {
  const fx = useEngineFixture();

  it("completes a delivery, keeps the result, drops the payload, and is repeatable with the same token", async () => {
    const { engine, clock } = await fx().engine();
    const [id] = await seed(engine, 1);
    const [d] = await engine.lease(Q, LEASE);
    clock.advance(10);
    expect(await engine.ack([{ token: d!.token, result: payload("r") }])).toEqual([
      { code: ScriptCode.Ok },
    ]);
    const task = await engine.getTask(Q, id!);
    expect(task).toMatchObject({ state: "COMPLETED", doneAt: clock.now(), result: payload("r") });
    expect(task!.payload.length).toBe(0);
    expect(task!.leaseDeadline).toBeUndefined();
    expect(await engine.ack([{ token: d!.token }])).toEqual([{ code: ScriptCode.AlreadyDone }]);
    const stats = await engine.stats(Q);
    expect(stats).toMatchObject({ leased: 0, completed: 1 });
    // a stale due entry is harmless: the reaper fixes it (due just past the deadline,
    // when the reaper can take the lease)
    expect(await engine.nextDueAt()).toBe(d!.deadline + 1);
  });

  it("acks many tokens of several queues in one call, answering in order", async () => {
    const { engine } = await fx().engine();
    const other = { command: "OTHER", tenant: "acme" };
    await seed(engine, 2);
    await seed(engine, 1, {}, other);
    const a = await engine.lease(Q, LEASE);
    const b = await engine.lease(other, LEASE);
    const tokens = [a[0]!.token, b[0]!.token, "garbage", a[1]!.token];
    expect((await engine.ack(tokens.map((token) => ({ token })))).map((o) => o.code)).toEqual([
      ScriptCode.Ok,
      ScriptCode.Ok,
      ScriptCode.NotFound,
      ScriptCode.Ok,
    ]);
  });

  it("refuses a forged token, another shard's token and an unknown task as NOT_FOUND", async () => {
    const { engine } = await fx().engine();
    await seed(engine, 1);
    const [d] = await engine.lease(Q, LEASE);
    const forged = d!.token.replace(/~[^~]+$/, "~AAAAAAAAAAAAAAAAAAAAAA");
    const { engine: otherShard } = await fx().engine({ shard: "b" });
    await seed(otherShard, 1);
    const [foreign] = await otherShard.lease(Q, LEASE);
    expect(
      (await engine.ack([{ token: forged }, { token: foreign!.token }, { token: "" }])).map(
        (o) => o.code,
      ),
    ).toEqual([ScriptCode.NotFound, ScriptCode.NotFound, ScriptCode.NotFound]);
    // a shard with another secret does not accept this shard's tokens
    const { engine: stranger } = await fx().engine();
    expect((await stranger.ack([{ token: d!.token }]))[0]!.code).toBe(ScriptCode.NotFound);
    expect((await engine.stats(Q)).leased).toBe(1);
  });

  it("deletes the task at once when completed retention is 0", async () => {
    const { engine } = await fx().engine({ completedRetentionMs: 0 });
    const [id] = await seed(engine, 1);
    const [d] = await engine.lease(Q, LEASE);
    expect((await engine.ack([{ token: d!.token }]))[0]!.code).toBe(ScriptCode.Ok);
    expect(await engine.getTask(Q, id!)).toBeUndefined();
    expect((await engine.stats(Q)).completed).toBe(0);
  });

  it("refuses a token whose nonce was guessed: knowing the task id and sequence is not enough", async () => {
    const { engine } = await fx().engine();
    await seed(engine, 1);
    const [d] = await engine.lease(Q, LEASE);
    const guessed = d!.token.replace(/~[0-9a-z]+$/, "~1");
    expect(await engine.ack([{ token: guessed }])).toEqual([{ code: ScriptCode.StaleLease }]);
    expect(await engine.extend([{ token: guessed }])).toEqual([{ code: ScriptCode.StaleLease }]);
    expect((await engine.nack([{ token: guessed }]))[0]!.code).toBe(ScriptCode.StaleLease);
    expect(await engine.ack([{ token: d!.token }])).toEqual([{ code: ScriptCode.Ok }]);
  });
});
