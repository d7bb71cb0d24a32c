import type { QueueEngine } from "../engine";
import { ScriptCode } from "../errors";
import type { Placement } from "../migration";
import { queueKeys } from "../keys";
import { LEASE, payload, Q, seed, useEngineFixture } from "../test/fixture";

describe("export-17.lua, export-confirm-6.lua, export-restore-15.lua", () => {
  const fx = useEngineFixture();

  it("reserves READY (priority first), then SCHEDULED, then DEAD tasks; never LEASED ones", async () => {
    const { engine } = await fx().engine();
    const low = await seed(engine, 2, { priority: 1 });
    const high = await seed(engine, 1, { priority: 8 });
    const [later] = await engine.enqueue(Q, [{ delayMs: 60_000 }]);
    const [leasedId] = await seed(engine, 1, { priority: 9 });
    const [held] = await engine.lease(Q, { max: 1, leaseMs: 30_000 });
    expect(held!.task.id).toBe(leasedId);
    const exported = await engine.exportBatch(Q, 10);
    expect(exported.map((e) => e.task.id)).toEqual([...high, ...low, later!.id]);
    expect(exported[0]!.task.payload.toString()).toBe("t0");
    const stats = await engine.stats(Q);
    expect(stats).toMatchObject({ ready: 0, scheduled: 0, leased: 1, moving: 4 });
    // reserved tasks can be neither leased nor promoted
    expect(await engine.lease(Q, LEASE)).toEqual([]);
  });

  it("returns the same reserved batch until it is confirmed (a crashed mover resumes)", async () => {
    const { engine } = await fx().engine();
    await seed(engine, 5);
    const first = await engine.exportBatch(Q, 3);
    const again = await engine.exportBatch(Q, 3);
    expect(again.map((e) => e.task.id)).toEqual(first.map((e) => e.task.id));
    expect(
      await engine.confirmExport(
        Q,
        first.map((e) => e.task.id),
      ),
    ).toBe(3);
    expect(
      await engine.confirmExport(
        Q,
        first.map((e) => e.task.id),
      ),
    ).toBe(0);
    expect(await engine.getTask(Q, first[0]!.task.id)).toBeUndefined();
    const next = await engine.exportBatch(Q, 3);
    expect(next).toHaveLength(2);
  });

  it("carries the live idempotency expiry with the task", async () => {
    const { engine, clock } = await fx().engine({ idempotencyWindowMs: 60_000 });
    await engine.enqueue(Q, [
      { payload: payload("x"), idempotencyKey: "k" },
      { payload: payload("y") },
    ]);
    const [withKey, without] = await engine.exportBatch(Q, 10);
    expect(withKey!.idempotencyExpiresAt).toBe(clock.now() + 60_000);
    expect(without!.idempotencyExpiresAt).toBe(0);
  });

  it("carries no window for a key that expired and now names a later task; the move keeps the later binding", async () => {
    const window = 60_000;
    const {
      engine: source,
      clock,
      redis,
      prefix,
    } = await fx().engine({
      shard: "a",
      idempotencyWindowMs: window,
    });
    const { engine: target } = await fx().engine({
      shard: "b",
      clock,
      idempotencyWindowMs: window,
    });
    const [old] = await source.enqueue(Q, [{ idempotencyKey: "k", maxAttempts: 1 }]);
    const [d] = await source.lease(Q, LEASE);
    await source.nack([{ token: d!.token }]); // its last attempt: dead, kept 7 days
    // the window ends (the store's TTL runs on its own clock: the key is dropped as it
    // would expire), and a later enqueue binds the key to a new task, which is leased
    await redis.del(queueKeys(Q, { shard: "a", prefix }).idem("k"));
    clock.advance(window + 1);
    const [later] = await source.enqueue(Q, [{ idempotencyKey: "k" }]);
    expect(later).toMatchObject({ duplicate: false });
    expect((await source.lease(Q, LEASE)).map((x) => x.task.id)).toEqual([later!.id]);

    const batch = await source.exportBatch(Q, 10);
    expect(batch.map((e) => [e.task.id, e.idempotencyExpiresAt])).toEqual([[old!.id, 0]]);
    await target.importTasks(Q, batch);
    await source.confirmExport(Q, [old!.id]);
    // the leased task's key is bound by the mover from the source's own record
    await target.bindIdempotencyKeys(Q, await source.lookupIdempotencyKeys(Q, ["k"]));
    const [retry] = await target.enqueue(Q, [{ idempotencyKey: "k" }]);
    expect(retry).toMatchObject({ duplicate: true, id: later!.id });
  });

  it("restores an aborted batch exactly where it was", async () => {
    const { engine } = await fx().engine();
    const ids = await seed(engine, 4);
    const [dying] = await seed(engine, 1, { priority: 9 });
    const [d] = await engine.lease(Q, { max: 1, leaseMs: 30_000 });
    expect(d!.task.id).toBe(dying);
    await engine.nack([{ token: d!.token, deadLetter: true }]);
    await engine.enqueue(Q, [{ delayMs: 1_000 }]);
    expect(await engine.exportBatch(Q, 10)).toHaveLength(6);
    expect(await engine.restoreExport(Q)).toBe(6);
    expect(await engine.stats(Q)).toMatchObject({ ready: 4, scheduled: 1, dead: 1, moving: 0 });
    expect((await engine.lease(Q, LEASE)).map((x) => x.task.id)).toEqual(ids);
  });

  it("a dead task a move has reserved is neither redriven nor purged by id until the move lets it go", async () => {
    const { engine } = await fx().engine();
    const [id] = await seed(engine, 1);
    const [d] = await engine.lease(Q, LEASE);
    await engine.nack([{ token: d!.token, deadLetter: true }]);
    expect(await engine.exportBatch(Q, 10)).toHaveLength(1);
    // a redrive here would be undone when the move confirms (the target holds it DEAD)
    expect(await engine.redrive(Q, 10, [id!])).toEqual({ count: 0, remaining: 0, notFound: [id] });
    expect(await engine.purge(Q, 10, [id!])).toEqual({ count: 0, remaining: 0, notFound: [id] });
    expect(await engine.stats(Q)).toMatchObject({ ready: 0, dead: 0, moving: 1 });
    // the move is aborted: the task is back in the DLQ, and a redrive by id takes it
    expect(await engine.restoreExport(Q)).toBe(1);
    expect(await engine.redrive(Q, 10, [id!])).toEqual({ count: 1, remaining: 0, notFound: [] });
  });

  it("an aborted move puts a scheduled task back on the shard's due index, so it is promoted when due", async () => {
    const { engine, clock } = await fx().engine();
    const [later] = await engine.enqueue(Q, [{ delayMs: 60_000 }]);
    const runAt = clock.now() + 60_000;
    expect(await engine.exportBatch(Q, 10)).toHaveLength(1);
    // a due pass while it is reserved finds nothing scheduled: the queue leaves the index
    clock.advance(60_000);
    expect(await engine.promote(Q)).toBe(0);
    expect(await engine.nextDueAt()).toBeUndefined();
    expect(await engine.restoreExport(Q)).toBe(1);
    expect(await engine.nextDueAt()).toBe(runAt);
    expect(await engine.dueQueues()).toEqual([Q]);
    expect(await engine.promote(Q)).toBe(1);
    expect((await engine.lease(Q, LEASE)).map((d) => d.task.id)).toEqual([later!.id]);
  });

  /** Moves every movable task of Q from `source` to `target`, `size` at a time. */
  async function moveAll(
    source: QueueEngine,
    target: QueueEngine,
    size: number,
    placement?: Placement,
  ): Promise<void> {
    for (;;) {
      const batch = await source.exportBatch(Q, size, undefined, placement);
      if (batch.length === 0) return;
      const res = await target.importTasks(Q, batch, undefined, placement);
      const held = [...res.imported, ...res.alreadyPresent];
      // the same batch would come back for ever
      if (held.length === 0) throw new Error("the target took none of the batch");
      await source.confirmExport(Q, held);
    }
  }

  const leasedIds = async (engine: QueueEngine) =>
    (await engine.lease(Q, { max: 1000, leaseMs: 30_000 })).map((d) => d.task.id);

  it("keeps FIFO within a priority through a move: the moved tasks come first, in their order, then the target's own", async () => {
    const { engine: source, clock } = await fx().engine({ shard: "a" });
    const { engine: target } = await fx().engine({ shard: "b", clock });
    const low = await seed(source, 7, { priority: 2 });
    const high = await seed(source, 4, { priority: 7 });
    // producers already enqueue on the target (the switch came before the first batch)
    const fresh = await seed(target, 3, { priority: 2 }, Q, "new");
    // a copying move (head placement) takes a list's newest tasks first, in the list's order
    const first = await source.exportBatch(Q, 3);
    expect(first.map((e) => e.task.id)).toEqual(high.slice(1));
    await target.importTasks(Q, first);
    await source.confirmExport(Q, high.slice(1));
    await moveAll(source, target, 3);
    expect(await source.stats(Q)).toMatchObject({ ready: 0, moving: 0 });
    expect(await leasedIds(target)).toEqual([...high, ...low, ...fresh]);
  });

  it("a batch for the target's head, resumed with a smaller limit, sends its newest part first, so the target still gets the list in order", async () => {
    const { engine: source, clock } = await fx().engine({ shard: "a" });
    const { engine: target } = await fx().engine({ shard: "b", clock });
    const ids = await seed(source, 7);
    const fresh = await seed(target, 1, {}, Q, "new");
    // a pass reserved six, and its import failed; the next pass starts smaller
    expect((await source.exportBatch(Q, 6)).map((e) => e.task.id)).toEqual(ids.slice(1));
    const resumed = await source.exportBatch(Q, 2);
    expect(resumed.map((e) => e.task.id)).toEqual(ids.slice(5));
    await moveAll(source, target, 2);
    expect(await leasedIds(target)).toEqual([...ids, ...fresh]);
  });

  it("an abort's trip home takes the oldest first and appends them behind what the source holds", async () => {
    const { engine: source, clock } = await fx().engine({ shard: "a" });
    const { engine: target } = await fx().engine({ shard: "b", clock });
    const ids = await seed(source, 6);
    // the copying move sent the newest three; producers enqueued two on the target
    const batch = await source.exportBatch(Q, 3);
    await target.importTasks(Q, batch);
    await source.confirmExport(Q, ids.slice(3));
    const fresh = await seed(target, 2, {}, Q, "new");
    const home = await target.exportBatch(Q, 2, undefined, "tail");
    expect(home.map((e) => e.task.id)).toEqual(ids.slice(3, 5));
    await source.importTasks(Q, home, undefined, "tail");
    await target.confirmExport(Q, ids.slice(3, 5));
    await moveAll(target, source, 2, "tail");
    expect(await leasedIds(source)).toEqual([...ids, ...fresh]);
  });

  it("a migration's imports count as held on the target, even once finished there, until its trip home sends them back", async () => {
    const { engine: source, clock } = await fx().engine({ shard: "a" });
    const { engine: target } = await fx().engine({
      shard: "b",
      clock,
      completedRetentionMs: 1_000,
    });
    const ids = await seed(source, 4);
    const batch = await source.exportBatch(Q, 4);
    await target.importTasks(Q, batch, "m1");
    await source.confirmExport(Q, ids);
    expect(await target.heldTasks(Q, ids, "m1")).toEqual(ids);
    // one runs to completion on the target and is deleted there: still counted
    const [done] = await target.lease(Q, { max: 1, leaseMs: 30_000 });
    await target.ack([{ token: done!.token }]);
    clock.advance(2_000);
    expect((await target.cleanup(Q)).completed).toBe(1);
    expect(await target.getTask(Q, done!.task.id)).toBeUndefined();
    // the abort sends the other three home: the source holds them again, not the target
    const home = await target.exportBatch(Q, 4, undefined, "tail");
    const back = home.map((e) => e.task.id);
    expect(back).toEqual(ids.filter((id) => id !== done!.task.id));
    await source.importTasks(Q, home, "m1", "tail");
    await target.confirmExport(Q, back, "m1");
    expect(await target.heldTasks(Q, ids, "m1")).toEqual([done!.task.id]);
  });

  it("puts an aborted batch back at the end of the lists it came from, in its order", async () => {
    const { engine } = await fx().engine();
    const ids = await seed(engine, 6);
    // a copying move's batch came from the tail and goes back there, in its order,
    // behind a task enqueued since (the abort's edge in docs/migration.md)
    expect((await engine.exportBatch(Q, 2)).map((e) => e.task.id)).toEqual(ids.slice(4));
    expect(await engine.stats(Q)).toMatchObject({ ready: 4, moving: 2 });
    const [later] = await seed(engine, 1, {}, Q, "later");
    expect(await engine.restoreExport(Q)).toBe(2);
    expect(await leasedIds(engine)).toEqual([...ids.slice(0, 4), later, ...ids.slice(4)]);
    // a draining move's batch (or a trip home's) came from the head; it goes back there,
    // ahead of a task released to the head since
    const more = await seed(engine, 4, {}, Q, "more");
    expect((await engine.exportBatch(Q, 2, undefined, "tail")).map((e) => e.task.id)).toEqual(
      more.slice(0, 2),
    );
    const [d] = await engine.lease(Q, { max: 1, leaseMs: 30_000 });
    expect(d!.task.id).toBe(more[2]);
    expect(await engine.restoreExport(Q)).toBe(2);
    expect(await leasedIds(engine)).toEqual([...more.slice(0, 2), more[3]]);
  });

  it("a batch cut by bytes from the tail leaves the rest of the list in place", async () => {
    const { engine } = await fx().engine();
    const ids = await seed(engine, 5);
    // a first task goes whatever its size; no second one fits in one byte
    const cut = await engine.exportBatch(Q, 10, 1);
    expect(cut.map((e) => e.task.id)).toEqual([ids[4]]);
    expect(await engine.stats(Q)).toMatchObject({ ready: 4, moving: 1 });
    expect(await engine.restoreExport(Q)).toBe(1);
    expect(await leasedIds(engine)).toEqual(ids);
  });

  it("moves a queue between two shards without loss or duplicates, keeping dedup and fencing", async () => {
    const { engine: source, clock } = await fx().engine({ shard: "a" });
    const { engine: target } = await fx().engine({ shard: "b", clock });
    await source.enqueue(Q, [{ payload: payload("p"), idempotencyKey: "k", priority: 6 }]);
    await seed(source, 3, { maxAttempts: 3 });
    const [d] = await source.lease(Q, { max: 1, leaseMs: 30_000 }); // the priority 6 task
    await source.nack([{ token: d!.token, delayMs: 0 }]);
    for (;;) {
      const batch = await source.exportBatch(Q, 2);
      if (batch.length === 0) break;
      const first = await target.importTasks(Q, batch);
      const repeat = await target.importTasks(Q, batch); // a retried import changes nothing
      expect(repeat).toEqual({ imported: [], alreadyPresent: first.imported });
      await source.confirmExport(Q, [...first.imported, ...first.alreadyPresent]);
    }
    expect(await source.stats(Q)).toMatchObject({ ready: 0, moving: 0 });
    expect((await target.stats(Q)).ready).toBe(4);
    const [dup] = await target.enqueue(Q, [{ idempotencyKey: "k" }]);
    expect(dup).toMatchObject({ duplicate: true, id: d!.task.id });
    const moved = await target.lease(Q, LEASE);
    const again = moved.find((x) => x.task.id === d!.task.id)!;
    expect(again.task).toMatchObject({ attempts: 2, leaseSeq: 2, priority: 6 });
    expect((await source.ack([{ token: d!.token }]))[0]!.code).toBe(ScriptCode.NotFound); // it moved away
    expect((await target.ack([{ token: again.token }]))[0]!.code).toBe(ScriptCode.Ok);
  });
});
