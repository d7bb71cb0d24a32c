import { queueKeys } from "./keys";
import { seed, useEngineFixture } from "./test/fixture";

describe("leaseAcrossTenants (the cross-tenant worker)", () => {
  const fx = useEngineFixture();
  const q = (tenant: string) => ({ command: "RENDER", tenant });

  it("serves tenants round-robin so one backlog cannot starve another", async () => {
    const { engine } = await fx().engine();
    await seed(engine, 500, {}, q("big"), "big");
    await seed(engine, 3, {}, q("small"), "small");
    await seed(engine, 3, {}, q("tiny"), "tiny");
    const served: string[] = [];
    for (let i = 0; i < 6; i++) {
      const leased = await engine.leaseAcrossTenants("RENDER", { max: 2, leaseMs: 30_000 });
      served.push(...leased.map((d) => d.task.tenant));
    }
    // within six small leases every tenant was served, and the small ones drained
    const count = (t: string) => served.filter((s) => s === t).length;
    expect(count("small")).toBe(3);
    expect(count("tiny")).toBe(3);
    expect(count("big")).toBe(6);
  });

  it("starts at the tenant a waiter was woken for, then goes on round-robin from there", async () => {
    const { engine } = await fx().engine();
    for (const t of ["a", "b", "c"]) await seed(engine, 3, {}, q(t), t);
    const one = async (first?: string) =>
      (await engine.leaseAcrossTenants("RENDER", { max: 1, leaseMs: 30_000 }, first)).map(
        (d) => d.task.tenant,
      );
    expect(await one()).toEqual(["a"]);
    // without the hint, b would come next
    expect(await one("c")).toEqual(["c"]);
    expect(await one()).toEqual(["a"]);
    expect(await one("unknown")).toEqual(["b"]); // a tenant the command lacks is no hint
  });

  it("splits a large request evenly and fills up from tenants that still have tasks", async () => {
    const { engine } = await fx().engine();
    await seed(engine, 100, {}, q("a"), "a");
    await seed(engine, 100, {}, q("b"), "b");
    await seed(engine, 2, {}, q("c"), "c");
    const leased = await engine.leaseAcrossTenants("RENDER", { max: 30, leaseMs: 30_000 });
    const by = (t: string) => leased.filter((d) => d.task.tenant === t).length;
    expect(leased).toHaveLength(30);
    expect(by("c")).toBe(2);
    expect(Math.abs(by("a") - by("b"))).toBeLessThanOrEqual(1);
  });

  it("serves a new tenant's first task at once, not when the tenant list is next re-read", async () => {
    const { engine } = await fx().engine();
    await seed(engine, 1, {}, q("old"), "old");
    expect(await engine.leaseAcrossTenants("RENDER", { max: 5, leaseMs: 30_000 })).toHaveLength(1);
    // the tenant list is cached now; a tenant it lacks gets a task
    const [id] = await seed(engine, 1, {}, q("new"), "new");
    const leased = await engine.leaseAcrossTenants("RENDER", { max: 5, leaseMs: 30_000 });
    expect(leased.map((d) => d.task.id)).toEqual([id]);
  });

  it("gives back what the other tenants' calls leased when one of them fails", async () => {
    const { engine, redis, prefix } = await fx().engine({ random: Math.random });
    await seed(engine, 5, {}, q("ok"), "ok");
    await seed(engine, 5, {}, q("broken"), "broken");
    // a store failure on one tenant's keys only: its in-flight index is not a sorted set
    const broken = queueKeys(q("broken"), { prefix, layout: "sharded", shard: "a" });
    await redis.set(broken.leased, "not a sorted set");
    await expect(engine.leaseAcrossTenants("RENDER", { max: 10, leaseMs: 30_000 })).rejects.toThrow(
      /WRONGTYPE/,
    );
    // nobody got the other tenant's tasks: ready again, not leased until they expire
    expect(await engine.stats(q("ok"))).toMatchObject({ ready: 5, leased: 0 });
  });

  it("leases only the named command, and nothing when no tenant has tasks", async () => {
    const { engine } = await fx().engine();
    await seed(engine, 2, {}, { command: "OTHER", tenant: "a" });
    expect(await engine.leaseAcrossTenants("RENDER", { max: 5, leaseMs: 30_000 })).toEqual([]);
    await expect(
      engine.leaseAcrossTenants("bad:name", { max: 5, leaseMs: 30_000 }),
    ).rejects.toThrow(/command must match/);
  });

  it("keeps nothing per command for commands nobody leases across tenants", async () => {
    const { engine } = await fx().engine();
    for (let i = 0; i < 50; i++)
      await seed(engine, 1, {}, { command: `ONCE_${i}`, tenant: "t" }, "x");
    await engine.leaseAcrossTenants("ONCE_0", { max: 1, leaseMs: 30_000 });
    const fair = (engine as unknown as { fair: { reading: number } }).fair;
    expect(fair.reading).toBe(0);
  });

  it("serves a tenant that left the registry and came back while the registry was read", async () => {
    const { engine, redis } = await fx().engine({ completedRetentionMs: 0 });
    await seed(engine, 1, {}, q("back"), "back");
    const [first] = await engine.leaseAcrossTenants("RENDER", { max: 1, leaseMs: 30_000 });
    await engine.ack([{ token: first!.token }]);
    expect(await engine.cleanup(q("back"))).toMatchObject({ forgotten: true });
    await new Promise((r) => setTimeout(r, 1_100)); // the cached tenant list is stale now
    const sscan = redis.sscan.bind(redis);
    let once = false;
    // the task arrives just after the registry read that misses it
    (redis as unknown as { sscan: typeof sscan }).sscan = (async (
      ...args: Parameters<typeof sscan>
    ) => {
      const out = await sscan(...args);
      if (!once) {
        once = true;
        await seed(engine, 1, {}, q("back"), "again");
      }
      return out;
    }) as typeof sscan;
    await engine.leaseAcrossTenants("RENDER", { max: 1, leaseMs: 30_000 });
    const again = await engine.leaseAcrossTenants("RENDER", { max: 1, leaseMs: 30_000 });
    expect(again.map((d) => d.task.payload.toString())).toEqual(["again0"]);
  });
});
