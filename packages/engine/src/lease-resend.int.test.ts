/**
 * A lease call whose reply a dropped connection lost: ioredis sends it again on the
 * next connection, so the script runs twice. The first run's tasks must not stay
 * leased by nobody (each would lose an attempt and wait out its lease).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { startRelay, type Relay } from "@codeq/testing";
import { ManualClock } from "./clock";
import { QueueEngine } from "./engine";
import { LeaseGiveBacks } from "./give-back";
import { queueKeys } from "./keys";
import { ScriptRunner } from "./script-runner";
import type { QueueRef } from "./keys";
import { payload, Q, useEngineFixture } from "./test/fixture";

describe("a lease call sent again after a lost reply", () => {
  const fx = useEngineFixture();
  let relay: Relay;
  let redis: Redis;
  let engine: QueueEngine;
  let clock: ManualClock;
  const givenBack: Array<[QueueRef, number]> = [];
  const failures: unknown[] = [];

  beforeEach(async () => {
    relay = await startRelay(fx().server.host, fx().server.port);
    // as the shard worker connects: ioredis sends again what a closed connection left
    redis = new Redis({
      host: "127.0.0.1",
      port: relay.port,
      protocol: 2,
      maxRetriesPerRequest: 2,
    });
    clock = new ManualClock();
    givenBack.length = 0;
    failures.length = 0;
    engine = await QueueEngine.open(redis, {
      shard: "a",
      keyPrefix: `${fx().server.keyPrefix}-resend-${Date.now()}-${Math.random()}`,
      clock,
      // a nonce of its own per call, as in production (the fixture's fixed one is not)
      random: Math.random,
      onLeasesGivenBack: (queue, n) => givenBack.push([queue, n]),
      onGiveBackFailed: (err) => failures.push(err),
    });
    // the scripts are on the server before a reply is dropped (EVALSHA, not EVAL)
    await engine.lease(Q, { max: 1, leaseMs: 30_000 });
    await engine.enqueueAndLease(Q, [], { max: 1, leaseMs: 30_000 });
  });

  afterEach(async () => {
    redis.disconnect();
    await relay.close();
  });

  const enqueue = (n: number, maxAttempts = 1) =>
    engine.enqueue(
      Q,
      Array.from({ length: n }, (_, i) => ({ payload: payload(`t${i}`), maxAttempts })),
    );

  it("gives back what the first run leased: ready again, its attempt not counted", async () => {
    const ids = (await enqueue(5)).map((o) => o.id);
    relay.dropNextReply();
    const got = await engine.lease(Q, { max: 2, leaseMs: 30_000 });
    expect(relay.dropped).toBe(1);
    // the second run's tasks are delivered; the first run's two are ready again, first
    expect(got.map((d) => d.task.id)).toEqual([ids[2], ids[3]]);
    expect(givenBack).toEqual([[Q, 2]]);
    for (const id of [ids[0]!, ids[1]!]) {
      expect(await engine.getTask(Q, id)).toMatchObject({ state: "READY", attempts: 0 });
    }
    const stats = await engine.stats(Q);
    expect(stats).toMatchObject({ ready: 3, leased: 2 });
    // with one attempt each, they are delivered, not dead-lettered when a lease expires
    const next = await engine.lease(Q, { max: 3, leaseMs: 30_000 });
    expect(next.map((d) => d.task.id)).toEqual([ids[0], ids[1], ids[4]]);
    // what was delivered is settled as usual
    expect(
      (await engine.ack([...got, ...next].map((d) => ({ token: d.token })))).map((o) => o.code),
    ).toEqual([0, 0, 0, 0, 0]);
  });

  it("gives back the tasks an enqueue handed straight to a lease", async () => {
    relay.dropNextReply();
    const out = await engine.enqueueAndLease(
      Q,
      Array.from({ length: 3 }, (_, i) => ({ payload: payload(`h${i}`), maxAttempts: 1 })),
      { max: 2, leaseMs: 30_000 },
    );
    expect(relay.dropped).toBe(1);
    // stored once (the second run found the ids stored), none left leased by nobody
    expect(out.outcomes.map((o) => o.duplicate)).toEqual([false, false, false]);
    const stats = await engine.stats(Q);
    expect(stats.leased).toBe(out.deliveries.length);
    expect(stats.ready + stats.leased).toBe(3);
    const delivered = new Set(out.deliveries.map((d) => d.task.id));
    for (const { id } of out.outcomes) {
      const task = await engine.getTask(Q, id);
      expect(task).toMatchObject(
        delivered.has(id) ? { state: "LEASED", attempts: 1 } : { state: "READY", attempts: 0 },
      );
    }
  });

  it("gives back only the lost call's tasks, not another call's of the same deadline", async () => {
    const ids = (await enqueue(4)).map((o) => o.id);
    // same clock, same duration: the same deadline, told apart by the calls' nonces
    const other = await engine.lease(Q, { max: 1, leaseMs: 30_000 });
    relay.dropNextReply();
    const got = await engine.lease(Q, { max: 1, leaseMs: 30_000 });
    expect(other.map((d) => d.task.id)).toEqual([ids[0]]);
    expect(got.map((d) => d.task.id)).toEqual([ids[2]]);
    expect(givenBack).toEqual([[Q, 1]]);
    expect(await engine.getTask(Q, ids[0]!)).toMatchObject({ state: "LEASED", attempts: 1 });
    expect(await engine.getTask(Q, ids[1]!)).toMatchObject({ state: "READY", attempts: 0 });
    expect(await engine.stats(Q)).toMatchObject({ ready: 2, leased: 2 });
  });

  it("reads in chunks the many leases other calls made with the same deadline", async () => {
    // 9,000 leases sharing one deadline: more ids than Lua unpacks in one go
    for (let i = 0; i < 9; i++) {
      await enqueue(1000);
      expect(await engine.lease(Q, { max: 1000, leaseMs: 30_000 })).toHaveLength(1000);
    }
    const [lost, kept] = (await enqueue(2)).map((o) => o.id);
    relay.dropNextReply();
    const got = await engine.lease(Q, { max: 1, leaseMs: 30_000 });
    expect(got.map((d) => d.task.id)).toEqual([kept]);
    expect(givenBack).toEqual([[Q, 1]]);
    expect(await engine.getTask(Q, lost!)).toMatchObject({ state: "READY", attempts: 0 });
    expect(await engine.stats(Q)).toMatchObject({ ready: 1, leased: 9_001 });
  }, 30_000);

  it("gives back a failed call's tasks once the store answers again", async () => {
    const ids = (await enqueue(3)).map((o) => o.id);
    // the reply is lost, then the store is away longer than the call waits
    relay.dropNextReply();
    relay.refuseFor(2_500);
    await expect(engine.lease(Q, { max: 2, leaseMs: 30_000 })).rejects.toThrow();
    const deadline = Date.now() + 15_000;
    while (givenBack.length === 0 && Date.now() < deadline) await sleep(50);
    // the first try failed while the store was away; a later one gave them back
    expect(failures.length).toBeGreaterThan(0);
    expect(givenBack).toEqual([[Q, 2]]);
    for (const id of ids) {
      expect(await engine.getTask(Q, id)).toMatchObject({ state: "READY", attempts: 0 });
    }
  }, 30_000);

  it("an enqueue sent again is no duplicate of itself, with or without an idempotency key", async () => {
    relay.dropNextReply();
    const out = await engine.enqueue(Q, [
      { payload: payload("keyed"), idempotencyKey: "order-1" },
      { payload: payload("plain") },
    ]);
    expect(relay.dropped).toBe(1);
    expect(out.map((o) => [o.duplicate, o.state])).toEqual([
      [false, "READY"],
      [false, "READY"],
    ]);
    expect(await engine.stats(Q)).toMatchObject({ ready: 2 });
    // a later enqueue with the key is the duplicate, of that task
    const again = await engine.enqueue(Q, [{ payload: payload("x"), idempotencyKey: "order-1" }]);
    expect(again.map((o) => [o.id, o.duplicate])).toEqual([[out[0]!.id, true]]);
  });

  it("a re-sent handoff answers each item as the first run would have", async () => {
    relay.dropNextReply();
    const out = await engine.enqueueAndLease(
      Q,
      [
        { payload: payload("a"), idempotencyKey: "k" },
        { payload: payload("again"), idempotencyKey: "k" },
      ],
      { max: 1, leaseMs: 30_000 },
    );
    // the first run handed the task to its lease; given back, it is ready, as answered
    expect(out.deliveries).toEqual([]);
    expect(out.outcomes.map((o) => [o.id, o.duplicate, o.state])).toEqual([
      [out.outcomes[0]!.id, false, "READY"],
      [out.outcomes[0]!.id, true, "READY"],
    ]);
    expect(await engine.getTask(Q, out.outcomes[0]!.id)).toMatchObject({ state: "READY" });
  });

  it("keeps nothing for a retry once the connection is closed for good", async () => {
    const failed: unknown[] = [];
    const backs = new LeaseGiveBacks(redis, new ScriptRunner(redis), clock, {
      onGivenBack: () => undefined,
      onFailed: (err) => failed.push(err),
    });
    const call = {
      queue: Q,
      keys: queueKeys(Q, { prefix: "unused", layout: "sharded", shard: "a" }),
      nonce: "00000000000001",
      deadline: String(clock.now() + 30_000).padStart(13, "0"),
      keep: [],
      reason: "lost reply" as const,
    };
    redis.disconnect();
    await backs.giveBack(call);
    expect(failed).toHaveLength(1);
    expect(backs.waiting).toBe(0);
  });

  it("leaves everything as it is when no call ran twice", async () => {
    await enqueue(3);
    // the connection closes as the call starts: it is sent once, on the next
    // connection, and the give-back that follows finds nothing to give back
    redis.disconnect(true);
    const got = await engine.lease(Q, { max: 2, leaseMs: 30_000 });
    expect(got).toHaveLength(2);
    expect(givenBack).toEqual([]);
    expect(await engine.stats(Q)).toMatchObject({ ready: 1, leased: 2 });
  });

  it("a purge or redrive of the oldest dead tasks, sent again, acts on no more than asked", async () => {
    await enqueue(10);
    const leased = await engine.lease(Q, { max: 10, leaseMs: 30_000 });
    await engine.nack(leased.map((d) => ({ token: d.token })));
    // both scripts on the server first (EVALSHA), by an id that is no task
    const none = "01JB0000000000000000000000";
    await engine.purge(Q, 1, [none]);
    await engine.redrive(Q, 1, [none]);
    expect((await engine.stats(Q)).dead).toBe(10);
    // the script's reply (an array starting with its count), not the read before it
    const scriptReply = (reply: Buffer) => /^\*\d+\r\n:/.test(reply.toString("latin1"));
    relay.dropNextReply(scriptReply);
    await engine.purge(Q, 3);
    expect(relay.dropped).toBe(1);
    expect((await engine.stats(Q)).dead).toBe(7);
    relay.dropNextReply(scriptReply);
    await engine.redrive(Q, 3);
    expect(relay.dropped).toBe(2);
    expect(await engine.stats(Q)).toMatchObject({ dead: 4, ready: 3 });
  });

  it("a redrive of named tasks, sent again, reports them redriven, not not found", async () => {
    const ids = (await enqueue(3)).map((o) => o.id);
    const leased = await engine.lease(Q, { max: 3, leaseMs: 30_000 });
    await engine.nack(leased.map((d) => ({ token: d.token })));
    const none = "01JB0000000000000000000000";
    await engine.redrive(Q, 1, [none]);
    relay.dropNextReply((reply) => /^\*\d+\r\n:/.test(reply.toString("latin1")));
    const out = await engine.redrive(Q, 10, [ids[0]!, ids[1]!, none]);
    expect(relay.dropped).toBe(1);
    // the first run redrove the two; the second finds them ready, as this call left them
    expect(out).toEqual({ count: 2, remaining: 1, notFound: [none] });
    expect(await engine.stats(Q)).toMatchObject({ dead: 1, ready: 2 });
    // a later call (another millisecond) finds a task that is not dead not found
    clock.advance(1);
    expect(await engine.redrive(Q, 10, [ids[0]!])).toEqual({
      count: 0,
      remaining: 1,
      notFound: [ids[0]],
    });
  });
});
