import { queueKeys } from "./keys";
import { deliveryBytes } from "./lease-size";
import { LEASE, Q, seed, useEngineFixture } from "./test/fixture";

/** A payload of `kb` KiB, its first byte naming it. */
const big = (name: string, kb: number) =>
  Buffer.concat([Buffer.from(name), Buffer.alloc(kb * 1024 - name.length, 120)]);

describe("bytes bounds: lease answers and export batches", () => {
  const fx = useEngineFixture();

  it("a lease keeps what fits in maxBytes and leaves the rest first in line, uncounted", async () => {
    const { engine } = await fx().engine();
    await engine.enqueue(
      Q,
      ["a", "b", "c", "d"].map((n) => ({ payload: big(n, 100) })),
    );
    const got = await engine.lease(Q, { ...LEASE, maxBytes: 250 * 1024 });
    expect(got.map((d) => d.task.payload.subarray(0, 1).toString())).toEqual(["a", "b"]);
    expect(got.reduce((n, d) => n + deliveryBytes(d), 0)).toBeLessThanOrEqual(250 * 1024);
    expect(await engine.stats(Q)).toMatchObject({ ready: 2, leased: 2 });
    // the two left come next, in their order, their attempt not counted
    const rest = await engine.lease(Q, LEASE);
    expect(rest.map((d) => d.task.payload.subarray(0, 1).toString())).toEqual(["c", "d"]);
    expect(rest.map((d) => d.task.attempts)).toEqual([1, 1]);
  });

  it("reads from the store only what fits, whatever the worker has seen of the queue", async () => {
    const producer = await fx().engine();
    await seed(producer.engine, 40, { payload: big("x", 100) });
    // another process (a worker restarted on a backlog) has seen none of them
    const givenBack: number[] = [];
    const { engine, redis } = await fx().engine({
      keyPrefix: producer.prefix,
      random: Math.random, // a nonce of its own per call, as in production
      onLeasesGivenBack: (_q, n) => givenBack.push(n),
    });
    // what this engine's connection has read from the store so far
    await redis.ping(); // connected
    const sent = () => redis.stream.bytesRead;
    const bound = { ...LEASE, max: 10, maxBytes: 250 * 1024 };
    for (let i = 0; i < 3; i++) {
      const before = sent();
      expect(await engine.lease(Q, bound)).toHaveLength(2);
      // two 100 KiB payloads, not ten read to answer two
      expect(sent() - before).toBeLessThan(250 * 1024);
    }
    expect(givenBack).toEqual([]);
    expect(await engine.stats(Q)).toMatchObject({ ready: 34, leased: 6 });
  });

  it("stops at the bound when large tasks follow small ones in the same queue", async () => {
    const givenBack: number[] = [];
    const { engine } = await fx().engine({
      random: Math.random,
      onLeasesGivenBack: (_q, n) => givenBack.push(n),
    });
    await seed(engine, 10, { payload: big("s", 1) });
    await seed(engine, 40, { payload: big("L", 100) });
    const bound = { ...LEASE, max: 100, maxBytes: 250 * 1024 };
    const first = await engine.lease(Q, bound);
    // ten small ones and the two large ones that fit after them
    expect(first.map((d) => d.task.payload.subarray(0, 1).toString()).join("")).toBe(
      "ssssssssssLL",
    );
    expect(await engine.lease(Q, bound)).toHaveLength(2);
    expect(givenBack).toEqual([]);
  });

  it("says how many tasks it left ready behind the bound, so their waiters are woken", async () => {
    const left: number[] = [];
    const { engine } = await fx().engine({ onTasksLeftReady: (_q, n) => left.push(n) });
    await seed(engine, 5, { payload: big("x", 100) });
    expect(await engine.lease(Q, { ...LEASE, max: 5, maxBytes: 250 * 1024 })).toHaveLength(2);
    expect(left).toEqual([3]);
    // a lease that took all it was asked for, or read the lists to the end, says nothing
    expect(await engine.lease(Q, { ...LEASE, max: 3 })).toHaveLength(3);
    expect(left).toEqual([3]);
  });

  it("counts a task's headers as the answer does: nothing leased is given back for them", async () => {
    const givenBack: number[] = [];
    const { engine } = await fx().engine({ onLeasesGivenBack: (_q, n) => givenBack.push(n) });
    const headers = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`h${i}`, "v"]));
    await seed(engine, 400, { payload: big("x", 4), headers });
    const got = await engine.lease(Q, { ...LEASE, max: 400, maxBytes: 1024 * 1024 });
    expect(got.length).toBeGreaterThan(100);
    expect(got.reduce((n, d) => n + deliveryBytes(d), 0)).toBeLessThanOrEqual(1024 * 1024);
    expect(givenBack).toEqual([]);
  });

  it("keeps a first task larger than maxBytes alone, unless told not to", async () => {
    const { engine } = await fx().engine();
    await engine.enqueue(Q, [{ payload: big("a", 64) }, { payload: big("b", 1) }]);
    expect(await engine.lease(Q, { ...LEASE, maxBytes: 1024, firstAlways: false })).toEqual([]);
    expect(await engine.stats(Q)).toMatchObject({ ready: 2, leased: 0 });
    const got = await engine.lease(Q, { ...LEASE, maxBytes: 1024 });
    expect(got.map((d) => d.task.payload.subarray(0, 1).toString())).toEqual(["a"]);
    expect(got[0]!.task.attempts).toBe(1);
  });

  it("leaves what did not fit in its list's order, not its ids'", async () => {
    const { engine } = await fx().engine();
    const [a, b, c] = (
      await engine.enqueue(
        Q,
        ["a", "b", "c"].map((n) => ({ payload: big(n, 10) })),
      )
    ).map((o) => o.id);
    // retried out of their id order: the list is c, b, a
    const [da, db] = await engine.lease(Q, { ...LEASE, max: 2 });
    await engine.nack([
      { token: db!.token, delayMs: 0 },
      { token: da!.token, delayMs: 0 },
    ]);
    const got = await engine.lease(Q, { ...LEASE, maxBytes: 15 * 1024 });
    expect(got.map((d) => d.task.id)).toEqual([c]);
    expect((await engine.lease(Q, LEASE)).map((d) => d.task.id)).toEqual([b, a]);
  });

  it("a cross-tenant lease gives back what passed the bound in its list's order", async () => {
    const givenBack: number[] = [];
    const { engine } = await fx().engine({ onLeasesGivenBack: (_q, n) => givenBack.push(n) });
    const q = (tenant: string) => ({ command: "ORDER", tenant });
    await seed(engine, 1, { payload: big("x", 85) }, q("t1"), "x");
    const [a, b, c] = (
      await engine.enqueue(
        q("t2"),
        ["a", "b", "c"].map((n) => ({ payload: big(n, 10) })),
      )
    ).map((o) => o.id);
    // retried out of their id order: t2's list is c, b, a
    const [da, db] = await engine.lease(q("t2"), { ...LEASE, max: 2 });
    await engine.nack([
      { token: db!.token, delayMs: 0 },
      { token: da!.token, delayMs: 0 },
    ]);
    // t1's call keeps its 85 KiB task over its 50 KiB share, t2's leases c, b, a within
    // its share; of those only c fits the 100 KiB left with x: b and a go back
    const got = await engine.leaseAcrossTenants("ORDER", { ...LEASE, maxBytes: 100 * 1024 });
    expect(got.map((d) => d.task.id).slice(1)).toEqual([c]);
    expect(givenBack).toEqual([2]);
    expect((await engine.lease(q("t2"), LEASE)).map((d) => d.task.id)).toEqual([b, a]);
  });

  it("a handoff leases only what fits, and counts the rest as ready", async () => {
    const givenBack: number[] = [];
    const { engine } = await fx().engine({ onLeasesGivenBack: (_q, n) => givenBack.push(n) });
    const out = await engine.enqueueAndLease(
      Q,
      ["a", "b", "c"].map((n) => ({ payload: big(n, 100) })),
      { ...LEASE, maxBytes: 150 * 1024 },
    );
    expect(out.deliveries.map((d) => d.task.payload.subarray(0, 1).toString())).toEqual(["a"]);
    expect(out.readyLeft).toBe(2);
    expect(await engine.stats(Q)).toMatchObject({ ready: 2, leased: 1 });
    // the store handed off only the first: nothing was leased to be given back
    expect(givenBack).toEqual([]);
  });

  it("a cross-tenant lease shares maxBytes among the tenants of a round", async () => {
    const { engine } = await fx().engine();
    const q = (tenant: string) => ({ command: "RENDER", tenant });
    for (const t of ["t1", "t2"]) await seed(engine, 3, { payload: big(t, 40) }, q(t), t);
    const got = await engine.leaseAcrossTenants("RENDER", { ...LEASE, maxBytes: 170 * 1024 });
    // 85 KiB each: two of one tenant's 40 KiB tasks, two of the other's
    expect(got.map((d) => d.task.tenant).sort()).toEqual(["t1", "t1", "t2", "t2"]);
    expect(got.reduce((n, d) => n + deliveryBytes(d), 0)).toBeLessThanOrEqual(170 * 1024);
    expect((await engine.stats(q("t1"))).ready + (await engine.stats(q("t2"))).ready).toBe(2);
  });

  it("a cross-tenant lease stays within maxBytes when its first task is over its share", async () => {
    const { engine } = await fx().engine();
    const q = (tenant: string) => ({ command: "MIXED", tenant });
    await seed(engine, 1, { payload: big("h", 150) }, q("a-huge"), "huge");
    for (let t = 0; t < 9; t++) await seed(engine, 3, { payload: big("s", 10) }, q(`b${t}`), "s");
    // the rotation starts at the huge one's tenant
    const got = await engine.leaseAcrossTenants("MIXED", { ...LEASE, maxBytes: 170 * 1024 });
    expect(got[0]!.task.tenant).toBe("a-huge");
    expect(got.reduce((n, d) => n + deliveryBytes(d), 0)).toBeLessThanOrEqual(170 * 1024);
    // what did not fit is ready again, its attempt not counted
    let ready = 0;
    for (let t = 0; t < 9; t++) ready += (await engine.stats(q(`b${t}`))).ready;
    expect(ready).toBe(27 - (got.length - 1));
    const again = await engine.leaseAcrossTenants("MIXED", { ...LEASE, max: 1000 });
    expect(again.every((d) => d.task.attempts === 1)).toBe(true);
  });

  it("a cross-tenant lease serves a task over its share whatever tenant the rotation starts at", async () => {
    const { engine } = await fx().engine();
    const q = (tenant: string) => ({ command: "SIZES", tenant });
    // a and z have tasks out (they stay in the rotation); only m has one ready, large
    for (const t of ["a", "z"]) {
      await seed(engine, 1, { payload: big(t, 10) }, q(t), t);
      expect(await engine.lease(q(t), LEASE)).toHaveLength(1);
    }
    await seed(engine, 1, { payload: big("m", 150) }, q("m"), "m");
    // the rotation starts at a: m's share is a third of the bound, its task over it
    const got = await engine.leaseAcrossTenants("SIZES", { ...LEASE, maxBytes: 170 * 1024 });
    expect(got.map((d) => d.task.tenant)).toEqual(["m"]);
    expect(got[0]!.task.attempts).toBe(1);
  });

  it("a cross-tenant lease serves a large task between tenants whose backlogs fill the bound", async () => {
    const { engine } = await fx().engine();
    const q = (tenant: string) => ({ command: "BETWEEN", tenant });
    for (const t of ["a", "z"]) await seed(engine, 30, { payload: big(t, 10) }, q(t), t);
    await seed(engine, 1, { payload: big("m", 150) }, q("m"), "m");
    const served: string[] = [];
    for (let i = 0; i < 2; i++) {
      const got = await engine.leaseAcrossTenants("BETWEEN", {
        max: 10,
        leaseMs: 30_000,
        maxBytes: 170 * 1024,
      });
      expect(got.reduce((n, d) => n + deliveryBytes(d), 0)).toBeLessThanOrEqual(170 * 1024);
      served.push(...got.map((d) => d.task.tenant));
    }
    // m's task went back for its size once at most, then came first
    expect(served).toContain("m");
    expect(await engine.stats(q("m"))).toMatchObject({ ready: 0, leased: 1 });
  });

  it("an export batch holds at most maxBytes, its first task whatever its size, and resumes the same way", async () => {
    const { engine } = await fx().engine();
    await engine.enqueue(
      Q,
      ["a", "b", "c", "d", "e"].map((n) => ({ payload: big(n, 100) })),
    );
    await engine.enqueue(Q, [{ payload: big("s", 100), delayMs: 60_000 }]);
    const names = (batch: { task: { payload: Buffer } }[]) =>
      batch.map((e) => e.task.payload.subarray(0, 1).toString());
    // a copying move (head placement) takes the newest first, in the list's order
    const first = await engine.exportBatch(Q, 100, 250 * 1024);
    expect(names(first)).toEqual(["d", "e"]);
    expect(await engine.stats(Q)).toMatchObject({ ready: 3, scheduled: 1, moving: 2 });
    // a crashed mover resumes with the same batch, as much of it as fits, newest first
    expect(names(await engine.exportBatch(Q, 100, 150 * 1024))).toEqual(["e"]);
    expect(names(await engine.exportBatch(Q, 100, 250 * 1024))).toEqual(["d", "e"]);
    await engine.confirmExport(
      Q,
      first.map((e) => e.task.id),
    );
    expect(names(await engine.exportBatch(Q, 100, 10))).toEqual(["c"]); // the first whatever its size
    await engine.restoreExport(Q);
    // ready ones from the tail, each batch in the list's order, then the scheduled one:
    // every task once
    const all: string[] = [];
    for (;;) {
      const batch = await engine.exportBatch(Q, 100, 250 * 1024);
      if (batch.length === 0) break;
      all.push(...names(batch));
      await engine.confirmExport(
        Q,
        batch.map((e) => e.task.id),
      );
    }
    expect(all).toEqual(["b", "c", "a", "s"]);
    expect(await engine.stats(Q)).toMatchObject({ ready: 0, scheduled: 0, moving: 0 });
  });

  it("an export cut by bytes takes nothing after the cut, and leaves the rest in place", async () => {
    const { engine } = await fx().engine();
    await engine.enqueue(Q, [
      { payload: big("h", 100), priority: 9 },
      { payload: big("i", 100), priority: 9 },
      { payload: big("l", 1), priority: 1 },
      { payload: big("s", 100), delayMs: 60_000 },
      { payload: big("t", 100), delayMs: 60_000 },
    ]);
    const names = async (maxBytes: number) => {
      const batch = await engine.exportBatch(Q, 100, maxBytes);
      await engine.confirmExport(
        Q,
        batch.map((e) => e.task.id),
      );
      return batch.map((e) => e.task.payload.subarray(0, 1).toString());
    };
    expect(await names(150 * 1024)).toEqual(["i"]); // not the small one behind the cut
    expect(await engine.stats(Q)).toMatchObject({ ready: 2, scheduled: 2, moving: 0 });
    expect(await names(210 * 1024)).toEqual(["h", "l", "s"]);
    expect(await engine.stats(Q)).toMatchObject({ ready: 0, scheduled: 1 });
    expect(await names(1)).toEqual(["t"]);
  });

  it("reserves a new batch when every task of the reserved one was deleted meanwhile", async () => {
    const { engine, redis, prefix } = await fx().engine();
    await engine.enqueue(
      Q,
      ["a", "b", "c"].map((n) => ({ payload: big(n, 1) })),
    );
    const [c] = await engine.exportBatch(Q, 1);
    // gone some other way while reserved (a store's leftover)
    await redis.hdel(queueKeys(Q, { prefix, layout: "sharded", shard: "a" }).state, c!.task.id);
    const next = await engine.exportBatch(Q, 1);
    expect(next.map((e) => e.task.payload.subarray(0, 1).toString())).toEqual(["b"]);
    expect(await engine.stats(Q)).toMatchObject({ ready: 1, moving: 1 });
  });

  it("resumes a reserved batch past the ids it sends first when those were deleted", async () => {
    const { engine, redis, prefix } = await fx().engine();
    await engine.enqueue(
      Q,
      ["a", "b", "c", "d", "e"].map((n) => ({ payload: big(n, 1) })),
    );
    const names = (batch: { task: { payload: Buffer } }[]) =>
      batch.map((e) => e.task.payload.subarray(0, 1).toString());
    const state = queueKeys(Q, { prefix, layout: "sharded", shard: "a" }).state;
    // a copying move sends a reservation's newest first: b c d e reserved, d e deleted
    const reserved = await engine.exportBatch(Q, 4);
    expect(names(reserved)).toEqual(["b", "c", "d", "e"]);
    await redis.hdel(state, reserved[2]!.task.id, reserved[3]!.task.id);
    // a smaller batch now (the mover halves it for a busy target): the rest of the reserved one
    expect(names(await engine.exportBatch(Q, 2))).toEqual(["b", "c"]);
    await engine.restoreExport(Q);
    // tail placement (draining, an abort's trip home) sends the oldest first: a b c
    // reserved, a b deleted
    const home = await engine.exportBatch(Q, 3, undefined, "tail");
    expect(names(home)).toEqual(["a", "b", "c"]);
    await redis.hdel(state, home[0]!.task.id, home[1]!.task.id);
    expect(names(await engine.exportBatch(Q, 1, undefined, "tail"))).toEqual(["c"]);
  });
});
