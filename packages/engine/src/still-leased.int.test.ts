import { decodeLeaseToken, encodeLeaseToken } from "./lease-token";
import { LEASE, Q, seed, useEngineFixture } from "./test/fixture";

describe("QueueEngine.stillLeased", () => {
  const fx = useEngineFixture();

  it("answers true only while the token's delivery holds the lease", async () => {
    const { engine } = await fx().engine();
    await seed(engine, 3);
    const [a, b, c] = await engine.lease(Q, LEASE);
    expect(await engine.stillLeased([a!.token, b!.token, c!.token])).toEqual([true, true, true]);
    await engine.ack([{ token: a!.token }]);
    await engine.nack([{ token: b!.token, delayMs: 0 }]);
    expect(await engine.stillLeased([a!.token, b!.token, c!.token])).toEqual([false, false, true]);
    // b delivered again: its old token stays false, the new one holds
    const [again] = await engine.lease(Q, LEASE);
    expect(again!.task.id).toBe(b!.task.id);
    expect(await engine.stillLeased([b!.token, again!.token])).toEqual([false, true]);
  });

  it("counts a lease past its deadline until the reaper takes it back", async () => {
    const { engine, clock } = await fx().engine();
    await seed(engine, 1);
    const [d] = await engine.lease(Q, { max: 1, leaseMs: 1_000 });
    clock.advance(1_001);
    expect(await engine.stillLeased([d!.token])).toEqual([true]);
    await engine.reap(Q);
    expect(await engine.stillLeased([d!.token])).toEqual([false]);
  });

  it("answers false for forged, malformed and other shards' tokens, in the caller's order", async () => {
    const { engine } = await fx().engine();
    const other = { command: "OTHER", tenant: "acme" };
    await seed(engine, 1);
    await seed(engine, 1, {}, other);
    const [d] = await engine.lease(Q, LEASE);
    const [o] = await engine.lease(other, LEASE);
    const f = decodeLeaseToken(d!.token)!;
    const tokens = [
      encodeLeaseToken({ ...f, nonce: f.nonce + 1 }),
      o!.token,
      encodeLeaseToken({ ...f, fence: f.fence + 1 }),
      "not a token",
      encodeLeaseToken({ ...f, shard: "b" }),
      d!.token,
      encodeLeaseToken({ ...f, taskId: "0".repeat(26) }),
    ];
    expect(await engine.stillLeased(tokens)).toEqual([
      false,
      true,
      false,
      false,
      false,
      true,
      false,
    ]);
  });

  it("reads more tokens than one command asks for", async () => {
    const { engine } = await fx().engine();
    const tokens: string[] = [];
    for (let i = 0; i < 3; i++) {
      await seed(engine, 900);
      tokens.push(...(await engine.lease(Q, { max: 900, leaseMs: 30_000 })).map((d) => d.token));
    }
    await engine.ack(tokens.filter((_, i) => i % 2 === 1).map((token) => ({ token })));
    expect(await engine.stillLeased(tokens)).toEqual(tokens.map((_, i) => i % 2 === 0));
  });
});
