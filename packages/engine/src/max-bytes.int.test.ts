import { deliveryBytes } from "./transitions";
import { LEASE, Q, seed, useEngineFixture } from "./test/fixture";

/** A payload of `kb` KiB, its first byte naming it. */
const big = (name: string, kb: number) =>
  Buffer.concat([Buffer.from(name), Buffer.alloc(kb * 1024 - name.length, 120)]);

describe("bytes bounds: lease answers and export batches", () => {
  const fx = useEngineFixture();

  it("a lease keeps what fits in maxBytes and gives the rest back, first in line, uncounted", async () => {
    const { engine } = await fx().engine();
    await engine.enqueue(
      Q,
      ["a", "b", "c", "d"].map((n) => ({ payload: big(n, 100) })),
    );
    const got = await engine.lease(Q, { ...LEASE, maxBytes: 250 * 1024 });
    expect(got.map((d) => d.task.payload.subarray(0, 1).toString())).toEqual(["a", "b"]);
    expect(got.reduce((n, d) => n + deliveryBytes(d), 0)).toBeLessThanOrEqual(250 * 1024);
    expect(await engine.stats(Q)).toMatchObject({ ready: 2, leased: 2 });
    // the two given back come next, in their order, their attempt not counted
    const rest = await engine.lease(Q, LEASE);
    expect(rest.map((d) => d.task.payload.subarray(0, 1).toString())).toEqual(["c", "d"]);
    expect(rest.map((d) => d.task.attempts)).toEqual([1, 1]);
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

  it("a handoff leases only what fits, and counts the rest as ready", async () => {
    const { engine } = await fx().engine();
    const out = await engine.enqueueAndLease(
      Q,
      ["a", "b", "c"].map((n) => ({ payload: big(n, 100) })),
      { ...LEASE, maxBytes: 150 * 1024 },
    );
    expect(out.deliveries.map((d) => d.task.payload.subarray(0, 1).toString())).toEqual(["a"]);
    expect(out.readyLeft).toBe(2);
    expect(await engine.stats(Q)).toMatchObject({ ready: 2, leased: 1 });
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

  it("an export batch holds at most maxBytes past its first task, and resumes the same way", async () => {
    const { engine } = await fx().engine();
    await engine.enqueue(
      Q,
      ["a", "b", "c", "d", "e"].map((n) => ({ payload: big(n, 100) })),
    );
    await engine.enqueue(Q, [{ payload: big("s", 100), delayMs: 60_000 }]);
    const names = (batch: { task: { payload: Buffer } }[]) =>
      batch.map((e) => e.task.payload.subarray(0, 1).toString());
    const first = await engine.exportBatch(Q, 100, 250 * 1024);
    expect(names(first)).toEqual(["a", "b"]);
    expect(await engine.stats(Q)).toMatchObject({ ready: 3, scheduled: 1, moving: 2 });
    // a crashed mover resumes with the same batch, as much of it as fits
    expect(names(await engine.exportBatch(Q, 100, 150 * 1024))).toEqual(["a"]);
    expect(names(await engine.exportBatch(Q, 100, 250 * 1024))).toEqual(["a", "b"]);
    await engine.confirmExport(
      Q,
      first.map((e) => e.task.id),
    );
    expect(names(await engine.exportBatch(Q, 100, 10))).toEqual(["c"]); // the first whatever its size
    await engine.restoreExport(Q);
    // ready ones in their order, then the scheduled one: every task once
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
    expect(all).toEqual(["c", "d", "e", "s"]);
    expect(await engine.stats(Q)).toMatchObject({ ready: 0, scheduled: 0, moving: 0 });
  });
});
