import { queueKeys } from "../keys";
import { Q, useEngineFixture } from "../test/fixture";
import type { ExportedTask } from "../migration";

const base = {
  command: Q.command,
  tenant: Q.tenant,
  shard: "x",
  payload: Buffer.from("p"),
  priority: 2,
  maxAttempts: 5,
  attempts: 3,
  leaseSeq: 4,
  backoff: { kind: "fixed", baseMs: 10, maxMs: 10, jitter: false },
  createdAt: 1,
  updatedAt: 2,
} as const;

describe("import-19.lua", () => {
  const fx = useEngineFixture();

  it("places READY, SCHEDULED and DEAD tasks as they were, keeping attempts, run-at and priority", async () => {
    const { engine, clock } = await fx().engine();
    const now = clock.now();
    const tasks: ExportedTask[] = [
      {
        idempotencyExpiresAt: 0,
        task: { ...base, id: "01JB0000000000000000000001", runAt: now, state: "READY" },
      },
      {
        idempotencyExpiresAt: 0,
        task: { ...base, id: "01JB0000000000000000000002", runAt: now + 5_000, state: "SCHEDULED" },
      },
      {
        idempotencyExpiresAt: 0,
        task: {
          ...base,
          id: "01JB0000000000000000000003",
          runAt: now,
          state: "DEAD",
          doneAt: now - 10,
          lastError: "x",
        },
      },
    ];
    expect(await engine.importTasks(Q, tasks)).toEqual({
      imported: tasks.map((t) => t.task.id),
      alreadyPresent: [],
    });
    expect(await engine.stats(Q)).toMatchObject({
      readyByPriority: [0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
      scheduled: 1,
      dead: 1,
    });
    expect(await engine.getTask(Q, tasks[1]!.task.id)).toMatchObject({
      runAt: now + 5_000,
      attempts: 3,
      leaseSeq: 4,
    });
    expect(await engine.nextDueAt()).toBe(now + 5_000);
    expect(await engine.queues()).toEqual([Q]);
  });

  it("is idempotent by id and restores a live idempotency key only if it is free", async () => {
    const { engine, clock } = await fx().engine();
    const now = clock.now();
    const [mine] = await engine.enqueue(Q, [{ idempotencyKey: "taken" }]);
    const tasks: ExportedTask[] = [
      {
        idempotencyExpiresAt: now + 1_000,
        task: {
          ...base,
          id: "01JB0000000000000000000004",
          runAt: now,
          state: "READY",
          idemKey: "free",
        },
      },
      {
        idempotencyExpiresAt: now + 1_000,
        task: {
          ...base,
          id: "01JB0000000000000000000005",
          runAt: now,
          state: "READY",
          idemKey: "taken",
        },
      },
      {
        idempotencyExpiresAt: now - 1,
        task: {
          ...base,
          id: "01JB0000000000000000000006",
          runAt: now,
          state: "READY",
          idemKey: "expired",
        },
      },
    ];
    await engine.importTasks(Q, tasks);
    expect(await engine.importTasks(Q, tasks)).toEqual({
      imported: [],
      alreadyPresent: tasks.map((t) => t.task.id),
    });
    const dedup = await engine.enqueue(Q, [
      { idempotencyKey: "free" },
      { idempotencyKey: "taken" },
      { idempotencyKey: "expired" },
    ]);
    expect(dedup.map((d) => [d.duplicate, d.id])).toEqual([
      [true, "01JB0000000000000000000004"],
      [true, mine!.id],
      [false, dedup[2]!.id],
    ]);
  });

  it("counts a task that landed in the same move and is gone since as already present, not stored again", async () => {
    const { engine, clock } = await fx().engine();
    const now = clock.now();
    const dead: ExportedTask = {
      idempotencyExpiresAt: 0,
      task: {
        ...base,
        id: "01JB0000000000000000000009",
        runAt: now,
        state: "DEAD",
        doneAt: now - 10,
        lastError: "x",
      },
    };
    expect((await engine.importTasks(Q, [dead], "m-gone")).imported).toEqual([dead.task.id]);
    // purged here (retention deletes finished tasks the same way)
    await engine.purge(Q, 10);
    expect(await engine.getTask(Q, dead.task.id)).toBeUndefined();
    // the source sends the batch again (its answer was lost): not brought back
    expect(await engine.importTasks(Q, [dead], "m-gone")).toEqual({
      imported: [],
      alreadyPresent: [dead.task.id],
    });
    expect(await engine.stats(Q)).toMatchObject({ dead: 0 });
    // another move's landing is its own: the task is stored again
    expect((await engine.importTasks(Q, [dead], "m-other")).imported).toEqual([dead.task.id]);
  });

  it("refuses tasks of another queue, states that cannot move, and oversized batches, storing nothing", async () => {
    const { engine, clock } = await fx().engine();
    const now = clock.now();
    const leased: ExportedTask = {
      idempotencyExpiresAt: 0,
      task: { ...base, id: "01JB0000000000000000000007", runAt: now, state: "LEASED" },
    };
    const foreign: ExportedTask = {
      idempotencyExpiresAt: 0,
      task: {
        ...base,
        tenant: "other",
        id: "01JB0000000000000000000008",
        runAt: now,
        state: "READY",
      },
    };
    await expect(engine.importTasks(Q, [leased])).rejects.toThrow(/only READY, SCHEDULED and DEAD/);
    await expect(engine.importTasks(Q, [foreign])).rejects.toThrow(/belongs to SEND_EMAIL\/other/);
    await expect(
      engine.importTasks(
        Q,
        Array.from({ length: 1001 }, () => foreign),
      ),
    ).rejects.toThrow(/at most 1000/);
    expect(await engine.stats(Q)).toMatchObject({ ready: 0 });
  });

  it("stores a task it has reserved to move the other way over the reserved copy (an abort brings it home), so the export's confirmation deletes nothing", async () => {
    const { engine } = await fx().engine();
    const taskId = (await engine.enqueue(Q, [{ payload: Buffer.from("home") }]))[0]!.id;
    // reserved here; the other side stored it, and has it on its way back before this
    // side's mover got the answer
    const [reserved] = await engine.exportBatch(Q, 10);
    expect(reserved!.task.id).toBe(taskId);
    const back: ExportedTask = { ...reserved!, task: { ...reserved!.task, attempts: 1 } };
    expect(await engine.importTasks(Q, [back])).toEqual({ imported: [taskId], alreadyPresent: [] });
    expect(await engine.stats(Q)).toMatchObject({ ready: 1, moving: 0 });
    // the answer to the first export comes at last: nothing of it is reserved any more
    expect(await engine.confirmExport(Q, [taskId])).toBe(0);
    expect(await engine.getTask(Q, taskId)).toMatchObject({ state: "READY", attempts: 1 });
    // a copy not reserved here is left as it is
    expect(await engine.importTasks(Q, [back])).toEqual({ imported: [], alreadyPresent: [taskId] });
    expect(await engine.stats(Q)).toMatchObject({ ready: 1 });
  });

  it("looks up which idempotency keys are live, with their tasks", async () => {
    const { engine, clock } = await fx().engine();
    const [kept] = await engine.enqueue(Q, [{ idempotencyKey: "kept" }]);
    const found = await engine.lookupIdempotencyKeys(Q, ["kept", "never"]);
    expect(found).toEqual([
      { key: "kept", taskId: kept!.id, expiresAt: expect.any(Number) as number },
    ]);
    expect(found[0]!.expiresAt).toBeGreaterThan(clock.now());
    await expect(
      engine.lookupIdempotencyKeys(
        Q,
        Array.from({ length: 1001 }, (_, i) => `k${i}`),
      ),
    ).rejects.toThrow(/at most 1000/);
  });

  it("pages live idempotency keys by expiry: none is skipped when keys expire between pages, nor past a page at one expiry", async () => {
    const window = 3_600_000;
    const { engine, clock, redis, prefix } = await fx().engine({ idempotencyWindowMs: window });
    for (let i = 0; i < 30; i++) {
      await engine.enqueue(Q, [{ idempotencyKey: `k${i}` }]);
      clock.advance(1);
    }
    // twelve keys with one expiry, more than a page of 5
    await engine.enqueue(
      Q,
      Array.from({ length: 12 }, (_, i) => ({ idempotencyKey: `same${i}` })),
    );
    // one key whose string is gone (expired in the store) while its index entry is not
    await redis.del(queueKeys(Q, { shard: "a", prefix }).idem("k7"));
    clock.advance(window - 31); // k0 has a millisecond left
    const listed: string[] = [];
    let after: number | undefined;
    let pages = 0;
    do {
      const page = await engine.idempotencyBindings(Q, after, 5);
      listed.push(...page.bindings.map((b) => b.key));
      after = page.next;
      // keys leave the live range between pages, as the clock moves on
      if (pages++ === 0) clock.advance(3);
    } while (after !== undefined);
    const expected = [
      ...Array.from({ length: 30 }, (_, i) => `k${i}`).filter((k) => k !== "k7"),
      ...Array.from({ length: 12 }, (_, i) => `same${i}`),
    ];
    expect([...listed].sort()).toEqual(expected.sort());
    expect(new Set(listed).size).toBe(listed.length); // none twice
  });
});
