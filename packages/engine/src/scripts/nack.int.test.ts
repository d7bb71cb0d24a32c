import { ScriptCode } from "../errors";
import { LEASE, Q, seed, useEngineFixture } from "../test/fixture";

const fixed = { kind: "fixed", baseMs: 1_000, maxMs: 1_000, jitter: false } as const;

describe("nack-16.lua", () => {
  const fx = useEngineFixture();

  it("with delay 0 makes the task ready at once, at the tail", async () => {
    const { engine } = await fx().engine();
    const [a, b] = await seed(engine, 2);
    const [d] = await engine.lease(Q, { max: 1, leaseMs: 30_000 });
    expect(await engine.nack([{ token: d!.token, delayMs: 0, error: "boom" }])).toEqual([
      { code: ScriptCode.Ok, state: "READY" },
    ]);
    expect((await engine.lease(Q, LEASE)).map((x) => x.task.id)).toEqual([b, a]);
    expect(await engine.getTask(Q, a!)).toMatchObject({ attempts: 2, lastError: "boom" });
  });

  it("with a delay schedules the task; without one it follows the backoff", async () => {
    const { engine, clock } = await fx().engine();
    await seed(engine, 2, {
      backoff: { kind: "linear", baseMs: 700, maxMs: 10_000, jitter: false },
    });
    const [x, y] = await engine.lease(Q, LEASE);
    const now = clock.now();
    expect(await engine.nack([{ token: x!.token, delayMs: 5_000 }, { token: y!.token }])).toEqual([
      { code: ScriptCode.Ok, state: "SCHEDULED" },
      { code: ScriptCode.Ok, state: "SCHEDULED" },
    ]);
    expect(await engine.getTask(Q, x!.task.id)).toMatchObject({ runAt: now + 5_000 });
    expect(await engine.getTask(Q, y!.task.id)).toMatchObject({ runAt: now + 700 }); // linear, attempt 1
    expect(await engine.nextDueAt()).toBe(now + 700);
  });

  it("computes exponential backoff with its cap and jitter inside [delay/2, delay]", async () => {
    const { engine, clock } = await fx().engine({ random: () => 0 });
    await seed(engine, 1, {
      maxAttempts: 10,
      backoff: { kind: "exponential", baseMs: 100, maxMs: 350, jitter: true },
    });
    const runAts: number[] = [];
    for (let i = 0; i < 4; i++) {
      clock.advance(10_000);
      const [d] = await engine.lease(Q, LEASE);
      await engine.nack([{ token: d!.token }]);
      runAts.push((await engine.getTask(Q, d!.task.id))!.runAt - clock.now());
    }
    // 100, 200, 400→350 cap, 350; with rnd 0 equal jitter gives half
    expect(runAts).toEqual([50, 100, 175, 175]);
  });

  it("moves the task to the DLQ on its last attempt or when dead-lettered", async () => {
    const { engine, clock } = await fx().engine();
    const [last] = await seed(engine, 1, { maxAttempts: 1, backoff: fixed });
    const [early] = await seed(engine, 1, { maxAttempts: 5 });
    const [a, b] = await engine.lease(Q, LEASE);
    expect(
      await engine.nack([
        { token: a!.token, error: "final" },
        { token: b!.token, error: "poison", deadLetter: true },
      ]),
    ).toEqual([
      { code: ScriptCode.Ok, state: "DEAD" },
      { code: ScriptCode.Ok, state: "DEAD" },
    ]);
    expect(await engine.getTask(Q, last!)).toMatchObject({
      state: "DEAD",
      lastError: "final",
      doneAt: clock.now(),
    });
    expect(await engine.getTask(Q, early!)).toMatchObject({
      state: "DEAD",
      lastError: "poison",
      attempts: 1,
    });
    expect((await engine.stats(Q)).dead).toBe(2);
  });

  it("gives a task it sends to the DLQ without error text a reason, not an earlier attempt's", async () => {
    const { engine, clock } = await fx().engine();
    const [last] = await seed(engine, 1, { maxAttempts: 2, backoff: fixed });
    const [poison] = await seed(engine, 1, { maxAttempts: 5 });
    const [first] = await engine.lease(Q, { max: 1, leaseMs: 30_000 });
    await engine.nack([{ token: first!.token, error: "timeout talking to the mail server" }]);
    clock.advance(1_000);
    const held = await engine.lease(Q, LEASE);
    const token = (id: string) => held.find((d) => d.task.id === id)!.token;
    // the DLQ says why the task is there
    expect(
      await engine.nack([{ token: token(last!) }, { token: token(poison!), deadLetter: true }]),
    ).toEqual([
      { code: ScriptCode.Ok, state: "DEAD" },
      { code: ScriptCode.Ok, state: "DEAD" },
    ]);
    expect(await engine.getTask(Q, last!)).toMatchObject({
      lastError: "attempts exhausted (the last nack gave no error)",
    });
    expect(await engine.getTask(Q, poison!)).toMatchObject({
      lastError: "dead-lettered by a nack that gave no error",
    });
  });

  it("refuses stale and unknown tokens without touching the task", async () => {
    const { engine, clock } = await fx().engine();
    await seed(engine, 1, { backoff: fixed });
    const [first] = await engine.lease(Q, LEASE);
    await engine.nack([{ token: first!.token, delayMs: 0 }]);
    const [second] = await engine.lease(Q, LEASE);
    clock.advance(5);
    expect(await engine.nack([{ token: first!.token }, { token: "nope" }])).toEqual([
      { code: ScriptCode.StaleLease, state: "LEASED" },
      { code: ScriptCode.NotFound },
    ]);
    expect(await engine.getTask(Q, second!.task.id)).toMatchObject({
      state: "LEASED",
      leaseSeq: 2,
      attempts: 2,
    });
  });

  it("answers a nack sent again by the same delivery as a repeat, and changes nothing", async () => {
    const { engine, clock } = await fx().engine();
    await seed(engine, 3, { backoff: fixed, maxAttempts: 5 });
    const [ready, scheduled, dead] = await engine.lease(Q, LEASE);
    const first = [
      { token: ready!.token, delayMs: 0, error: "again" },
      { token: scheduled!.token, delayMs: 5_000 },
      { token: dead!.token, deadLetter: true, error: "poison" },
    ];
    expect(await engine.nack(first)).toEqual([
      { code: ScriptCode.Ok, state: "READY" },
      { code: ScriptCode.Ok, state: "SCHEDULED" },
      { code: ScriptCode.Ok, state: "DEAD" },
    ]);
    const before = await Promise.all(
      [ready, scheduled, dead].map((d) => engine.getTask(Q, d!.task.id)),
    );
    clock.advance(10);
    // the answer was lost and the worker sends the same nacks again, even with other options
    expect(await engine.nack(first.map(({ token }) => ({ token, deadLetter: true })))).toEqual([
      { code: ScriptCode.AlreadyDone, state: "READY" },
      { code: ScriptCode.AlreadyDone, state: "SCHEDULED" },
      { code: ScriptCode.AlreadyDone, state: "DEAD" },
    ]);
    const after = await Promise.all(
      [ready, scheduled, dead].map((d) => engine.getTask(Q, d!.task.id)),
    );
    expect(after).toEqual(before);
    // two of the same token in one call: the first nacks, the second is its repeat
    const [again] = await engine.lease(Q, { max: 1, leaseMs: 30_000 });
    expect(await engine.nack([{ token: again!.token }, { token: again!.token }])).toEqual([
      { code: ScriptCode.Ok, state: "SCHEDULED" },
      { code: ScriptCode.AlreadyDone, state: "SCHEDULED" },
    ]);
    // an ack is never a repeat of a nack
    expect(await engine.ack([{ token: ready!.token }])).toEqual([{ code: ScriptCode.StaleLease }]);
  });

  it("is a repeat only under the delivery's own nonce, which is never 0", async () => {
    // random 0: the smallest nonce a lease call can draw
    const { engine } = await fx().engine({ random: () => 0 });
    await seed(engine, 1);
    const [d] = await engine.lease(Q, { max: 1, leaseMs: 30_000 });
    expect(await engine.nack([{ token: d!.token, delayMs: 0 }])).toEqual([
      { code: ScriptCode.Ok, state: "READY" },
    ]);
    const nonce = d!.token.slice(d!.token.lastIndexOf("~") + 1);
    const other = d!.token.replace(/~[0-9a-z]+$/, `~${(parseInt(nonce, 36) + 1).toString(36)}`);
    expect(await engine.nack([{ token: d!.token }, { token: other }])).toEqual([
      { code: ScriptCode.AlreadyDone, state: "READY" },
      { code: ScriptCode.StaleLease, state: "READY" },
    ]);
  });

  it("is stale, not a repeat, after the reaper or a release ended the delivery", async () => {
    const { engine, clock } = await fx().engine();
    await seed(engine, 2, { backoff: fixed, maxAttempts: 5 });
    const [reaped] = await engine.lease(Q, { max: 1, leaseMs: 1_000 });
    const [released] = await engine.lease(Q, { max: 1, leaseMs: 30_000 });
    clock.advance(1_001);
    expect(await engine.reap(Q)).toMatchObject({ reaped: 1, dead: 0 });
    expect(await engine.release([released!.token])).toEqual([
      { code: ScriptCode.Ok, state: "READY" },
    ]);
    // the worker meant to dead-letter them: it must not be told that happened
    expect(
      await engine.nack([
        { token: reaped!.token, deadLetter: true },
        { token: released!.token, deadLetter: true },
      ]),
    ).toEqual([
      { code: ScriptCode.StaleLease, state: "SCHEDULED" },
      { code: ScriptCode.StaleLease, state: "READY" },
    ]);
    // a release is never a repeat either, not even of the holder's own nack
    const [held] = await engine.lease(Q, { max: 1, leaseMs: 30_000 });
    await engine.nack([{ token: held!.token, delayMs: 5_000 }]);
    expect(await engine.release([held!.token])).toEqual([
      { code: ScriptCode.StaleLease, state: "SCHEDULED" },
    ]);
  });

  it("is stale for a token made up with the nonce of a delivery taken back", async () => {
    const { engine } = await fx().engine();
    const [id] = await seed(engine, 1);
    const [d] = await engine.lease(Q, { max: 1, leaseMs: 30_000 });
    await engine.release([d!.token]);
    const [never] = await seed(engine, 1);
    // nonce 0: what a task taken back holds (and lease sequence 0 too, one never leased)
    const forged = (taskId: string, fence: number) =>
      d!.token.replace(`~${id}~1~`, `~${taskId}~${fence}~`).replace(/~[0-9a-z]+$/, "~0");
    expect(forged(id!, 1)).not.toBe(d!.token);
    expect(await engine.nack([{ token: forged(id!, 1) }, { token: forged(never!, 0) }])).toEqual([
      { code: ScriptCode.StaleLease, state: "READY" },
      { code: ScriptCode.NotFound }, // no delivery has sequence 0: refused unread
    ]);
  });

  it("refuses an out-of-range delay or an oversized error for the whole call", async () => {
    const { engine } = await fx().engine();
    await expect(engine.nack([{ token: "x", delayMs: -1 }])).rejects.toThrow(/nack delay/);
    await expect(engine.nack([{ token: "x", delayMs: 86_400_001 }])).rejects.toThrow(/nack delay/);
    await expect(engine.nack([{ token: "x", error: "e".repeat(4097) }])).rejects.toThrow(/4096/);
  });

  it("release puts the task back at the head of its list, ready at once", async () => {
    const { engine } = await fx().engine();
    const [a, b] = await seed(engine, 2);
    const [d] = await engine.lease(Q, { max: 1, leaseMs: 30_000 });
    expect(await engine.release([d!.token])).toEqual([{ code: ScriptCode.Ok, state: "READY" }]);
    expect((await engine.lease(Q, LEASE)).map((x) => x.task.id)).toEqual([a, b]);
    expect(await engine.getTask(Q, a!)).toMatchObject({ attempts: 2, lastError: "lease released" });
  });

  it("release and give-back put a batch back at the head of its list in the batch's order", async () => {
    const { engine } = await fx().engine();
    const ids = await seed(engine, 5);
    const first = await engine.lease(Q, { max: 3, leaseMs: 30_000 });
    await engine.release(first.map((d) => d.token));
    const second = await engine.lease(Q, { max: 3, leaseMs: 30_000 });
    expect(second.map((d) => d.task.id)).toEqual(ids.slice(0, 3));
    await engine.giveBack(second.map((d) => d.token));
    expect((await engine.lease(Q, LEASE)).map((d) => d.task.id)).toEqual(ids);
  });

  it("releases a closed stream's 9,000 leases of one queue in one call, in their order", async () => {
    const { engine } = await fx().engine();
    const ids: string[] = [];
    for (let i = 0; i < 9; i++) ids.push(...(await seed(engine, 1000)));
    const leased = [];
    for (let i = 0; i < 9; i++)
      leased.push(...(await engine.lease(Q, { max: 1000, leaseMs: 30_000 })));
    const out = await engine.release(leased.map((d) => d.token));
    expect(out.filter((o) => o.code === ScriptCode.Ok)).toHaveLength(9000);
    expect(await engine.stats(Q)).toMatchObject({ ready: 9000, leased: 0 });
    expect((await engine.lease(Q, { max: 1000, leaseMs: 30_000 })).map((d) => d.task.id)).toEqual(
      ids.slice(0, 1000),
    );
  });

  it("gives back a lease never delivered without counting it, even on the last attempt", async () => {
    const { engine } = await fx().engine();
    const [a, b] = await seed(engine, 2, { maxAttempts: 2 });
    const [first] = await engine.lease(Q, { max: 1, leaseMs: 30_000 });
    await engine.nack([{ token: first!.token, delayMs: 0, error: "boom" }]); // attempt 1 failed
    const [last] = await engine.lease(Q, { max: 1, leaseMs: 30_000 }); // b, its first
    expect(last!.task.id).toBe(b);
    const [again] = await engine.lease(Q, { max: 1, leaseMs: 30_000 }); // a, its last
    expect(again!.task).toMatchObject({ id: a, attempts: 2 });
    expect(await engine.giveBack([again!.token])).toEqual([
      { code: ScriptCode.Ok, state: "READY" },
    ]);
    // ready at the head, the attempt not used up, the last error kept, not dead
    expect(await engine.getTask(Q, a!)).toMatchObject({
      state: "READY",
      attempts: 1,
      lastError: "boom",
    });
    const [next] = await engine.lease(Q, LEASE);
    expect(next!.task).toMatchObject({ id: a, attempts: 2 });
    // and a late nack of the given-back delivery is stale
    expect(await engine.nack([{ token: again!.token }])).toEqual([
      { code: ScriptCode.StaleLease, state: "LEASED" },
    ]);
  });
});
