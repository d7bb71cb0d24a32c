import { LEASE, Q, seed, useEngineFixture } from "../test/fixture";
import type { QueueEngine } from "../engine";

async function killAll(engine: QueueEngine, clock: { advance(ms: number): void }) {
  for (;;) {
    const leased = await engine.lease(Q, LEASE);
    if (leased.length === 0) return;
    for (const d of leased) {
      clock.advance(1);
      await engine.nack([{ token: d.token, deadLetter: true, error: `dead ${d.task.payload}` }]);
    }
  }
}

describe("dead-list-4.lua", () => {
  const fx = useEngineFixture();

  it("pages through the DLQ oldest first, ties included, with a cursor", async () => {
    const { engine, clock } = await fx().engine();
    const ids = await seed(engine, 7);
    await killAll(engine, clock);
    const first = await engine.listDead(Q, 3);
    const second = await engine.listDead(Q, 3, first.cursor);
    const third = await engine.listDead(Q, 3, second.cursor);
    expect([...first.tasks, ...second.tasks, ...third.tasks].map((t) => t.id)).toEqual(ids);
    expect(third.cursor).toBeUndefined();
    expect(first.tasks[0]).toMatchObject({ state: "DEAD", lastError: "dead t0" });
    await expect(engine.listDead(Q, 3, "garbage")).rejects.toThrow(/page token/);
    await expect(engine.listDead(Q, 1001)).rejects.toThrow(/page size/);
  });

  it("ends a page at its byte bound, and lists nothing past a strict one but a cursor", async () => {
    const { engine, clock } = await fx().engine();
    const ids = await seed(engine, 5, { payload: Buffer.alloc(10_000) });
    for (const d of await engine.lease(Q, LEASE)) {
      clock.advance(1);
      await engine.nack([{ token: d.token, deadLetter: true }]);
    }
    const first = await engine.listDead(Q, 100, undefined, { maxBytes: 25_000 });
    expect(first.tasks.map((t) => t.id)).toEqual(ids.slice(0, 2));
    // a first task over the bound is listed alone, unless the bound is strict
    const alone = await engine.listDead(Q, 100, first.cursor, { maxBytes: 100 });
    expect(alone.tasks.map((t) => t.id)).toEqual([ids[2]]);
    const none = await engine.listDead(Q, 100, first.cursor, { maxBytes: 100, firstAlways: false });
    expect(none.tasks).toEqual([]);
    expect(none.cursor).toBe(first.cursor);
    const fromStart = await engine.listDead(Q, 100, undefined, { maxBytes: 0, firstAlways: false });
    expect(fromStart.tasks).toEqual([]);
    const rest = await engine.listDead(Q, 100, fromStart.cursor);
    expect(rest.tasks.map((t) => t.id)).toEqual(ids);
    expect(rest.cursor).toBeUndefined();
  });

  it("does not skip tasks that died in the same millisecond", async () => {
    const { engine } = await fx().engine();
    const ids = await seed(engine, 5);
    const leased = await engine.lease(Q, LEASE);
    await engine.nack(leased.map((d) => ({ token: d.token, deadLetter: true })));
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await engine.listDead(Q, 2, cursor);
      seen.push(...page.tasks.map((t) => t.id));
      cursor = page.cursor;
    } while (cursor);
    expect(seen).toEqual(ids);
  });
});

describe("redrive-12.lua", () => {
  const fx = useEngineFixture();

  it("requeues dead tasks with attempts reset, oldest first or by id, bounded", async () => {
    const { engine, clock } = await fx().engine();
    const ids = await seed(engine, 4, { maxAttempts: 2 });
    await killAll(engine, clock);
    expect(await engine.redrive(Q, 2)).toEqual({ count: 2, remaining: 2, notFound: [] });
    // a later call: one in the same millisecond would take ids[0], which the call before
    // redrove, for its own first run's (redrive-12.lua; lease-resend.int.test.ts)
    clock.advance(1);
    expect(await engine.redrive(Q, 10, [ids[3]!, ids[0]!, "01JB0000000000000000000000"])).toEqual({
      count: 1,
      remaining: 1,
      notFound: [ids[0], "01JB0000000000000000000000"],
    });
    const back = await engine.lease(Q, LEASE);
    expect(back.map((d) => d.task.id)).toEqual([ids[0], ids[1], ids[3]]);
    expect(back.every((d) => d.task.attempts === 1)).toBe(true);
    await expect(engine.redrive(Q, 0)).rejects.toThrow(/limit/);
  });

  it("takes an id named twice as one task", async () => {
    const { engine, clock } = await fx().engine();
    const ids = await seed(engine, 2);
    await killAll(engine, clock);
    expect(await engine.redrive(Q, 10, [ids[1]!, ids[1]!])).toEqual({
      count: 1,
      remaining: 1,
      notFound: [],
    });
    expect(await engine.purge(Q, 10, [ids[0]!, ids[0]!])).toEqual({
      count: 1,
      remaining: 0,
      notFound: [],
    });
  });

  it("refuses more ids named than its limit, rather than act on some and say nothing of the rest", async () => {
    const { engine, clock } = await fx().engine();
    const ids = await seed(engine, 2);
    await killAll(engine, clock);
    await expect(engine.redrive(Q, 1, ids)).rejects.toThrow(/2 named, more than the limit of 1/);
    await expect(engine.purge(Q, 1, ids)).rejects.toThrow(/more than the limit/);
    expect((await engine.stats(Q)).dead).toBe(2);
  });
});

describe("purge-5.lua", () => {
  const fx = useEngineFixture();

  it("deletes dead tasks for good, never a live one", async () => {
    const { engine, clock } = await fx().engine();
    const ids = await seed(engine, 3);
    await killAll(engine, clock);
    const [live] = await seed(engine, 1);
    expect(await engine.purge(Q, 10, [ids[1]!, live!])).toEqual({
      count: 1,
      remaining: 2,
      notFound: [live],
    });
    expect(await engine.getTask(Q, ids[1]!)).toBeUndefined();
    expect(await engine.purge(Q)).toEqual({ count: 2, remaining: 0, notFound: [] });
    expect(await engine.getTask(Q, live!)).toMatchObject({ state: "READY" });
  });
});
