import { QueueEngine, ScriptCode, type Delivery, type SettleOutcome } from "@codeq/engine";
import type { Redis } from "ioredis";
import { runRedisVariant, type RedisVariant } from "../redis-variant";
import { ratio, type Scenario, type VariantResult } from "../scenario";

/**
 * The engine against its ceiling: the same enqueue → lease → ack cycle, once through
 * QueueEngine (one script per step, every guarantee) and once as the fewest plain
 * Redis commands that keep the cycle's shape (a ready list, an in-flight record,
 * removal at ack) and none of the guarantees: no task record, no attempts, no
 * fencing, no priorities or schedule, no scripts. Same server, same connection
 * settings, same concurrency, same 64-byte payload; the ceiling is therefore an
 * upper bound the engine's Lua and client work can only approach.
 */

const CONCURRENCY = 64;
const BATCH = 100;
const LEASE_MS = 30_000;
/** At least the batched engine's share of the batched ceiling (the target). */
const BATCHED_TARGET = 0.7;
const QUEUE = { command: "BENCH", tenant: "t1" } as const;
const PAYLOAD = Buffer.alloc(64, "p");
const PAYLOAD_TEXT = PAYLOAD.toString();

/** Counts the acks that completed; any refusal means the benchmark itself is wrong. */
function acked(outcomes: readonly SettleOutcome[]): number {
  const bad = outcomes.find((o) => o.code !== ScriptCode.Ok);
  if (bad) throw new Error(`ack refused with code ${bad.code}`);
  return outcomes.length;
}

const engineSingle: RedisVariant = {
  name: "engine single",
  unit: "cycles",
  shape: "enqueue 1, lease max 1, ack 1 (3 script calls)",
  concurrency: CONCURRENCY,
  async open(redis, keyPrefix) {
    const engine = await QueueEngine.open(redis, { shard: "a", keyPrefix });
    return async () => {
      await engine.enqueue(QUEUE, [{ payload: PAYLOAD }]);
      const got = await engine.lease(QUEUE, { max: 1, leaseMs: LEASE_MS });
      return got.length === 0 ? 0 : acked(await engine.ack([{ token: got[0]!.token }]));
    };
  },
};

const engineBatched: RedisVariant = {
  name: "engine batched",
  unit: "tasks",
  shape: `enqueue ${BATCH} in one call, lease until ${BATCH} or empty, ack them in one call`,
  concurrency: CONCURRENCY,
  async open(redis, keyPrefix) {
    const engine = await QueueEngine.open(redis, { shard: "a", keyPrefix });
    const specs = Array.from({ length: BATCH }, () => ({ payload: PAYLOAD }));
    return async () => {
      await engine.enqueue(QUEUE, specs);
      const leased: Delivery[] = [];
      while (leased.length < BATCH) {
        const got = await engine.lease(QUEUE, { max: BATCH - leased.length, leaseMs: LEASE_MS });
        if (got.length === 0) break;
        leased.push(...got);
      }
      if (leased.length === 0) return 0;
      return acked(await engine.ack(leased.map((d) => ({ token: d.token }))));
    };
  },
};

/** A unique item per task: "<id>|<payload>", so a lease returns the payload as the engine's does. */
function items(): (n: number) => string[] {
  let seq = 0;
  return (n) => Array.from({ length: n }, () => `${(++seq).toString(36)}|${PAYLOAD_TEXT}`);
}

/**
 * Ceiling, one task per cycle, 3 commands:
 *   RPUSH ready <item>; LMOVE ready inflight LEFT RIGHT; LREM inflight 1 <item>
 * LMOVE is the one atomic command that leases with an in-flight record. LREM scans
 * the in-flight list, but it never holds more than one item per loop (64), so the
 * scan costs little next to a round trip.
 */
const ceilingSingle: RedisVariant = {
  name: "ceiling single",
  unit: "cycles",
  shape: "RPUSH; LMOVE ready inflight; LREM inflight 1",
  concurrency: CONCURRENCY,
  async open(redis, prefix) {
    const [ready, inflight, next] = [`${prefix}:ready`, `${prefix}:inflight`, items()];
    return async () => {
      await redis.rpush(ready, ...next(1));
      const got = await redis.lmove(ready, inflight, "LEFT", "RIGHT");
      return got === null ? 0 : await redis.lrem(inflight, 1, got);
    };
  },
};

/**
 * Ceiling, 100 tasks per cycle, 4 commands:
 *   RPUSH ready <100 items>; LPOP ready 100; SADD inflight <items>; SREM inflight <items>
 * (LPOP and SADD repeat, as the engine's lease does, while a concurrent loop has
 * taken some of this loop's tasks.) Redis has no multi-element LMOVE, so the lease is
 * LPOP with a count followed by one variadic SADD: two commands instead of a 100-command
 * pipeline. The in-flight record is a set, not a list: up to 6,400 items are in
 * flight, and 100 LREMs over a list that long would make the ceiling slow for a
 * reason the engine (a sorted set) does not share.
 */
const ceilingBatched: RedisVariant = {
  name: "ceiling batched",
  unit: "tasks",
  shape: `RPUSH ${BATCH}; LPOP ready ${BATCH} + SADD inflight; SREM inflight ${BATCH}`,
  concurrency: CONCURRENCY,
  async open(redis: Redis, prefix) {
    const [ready, inflight, next] = [`${prefix}:ready`, `${prefix}:inflight`, items()];
    return async () => {
      await redis.rpush(ready, ...next(BATCH));
      const leased: string[] = [];
      while (leased.length < BATCH) {
        const got = await redis.lpop(ready, BATCH - leased.length);
        if (!got || got.length === 0) break;
        await redis.sadd(inflight, ...got);
        leased.push(...got);
      }
      return leased.length === 0 ? 0 : await redis.srem(inflight, ...leased);
    };
  },
};

export const VARIANTS: readonly RedisVariant[] = [
  engineSingle,
  ceilingSingle,
  engineBatched,
  ceilingBatched,
];

export const engineScenario: Scenario = {
  name: "engine",
  summary: "QueueEngine enqueue→lease→ack on one connection vs the plain-Redis ceiling",
  async run(ctx) {
    const variants: VariantResult[] = [];
    for (const variant of VARIANTS) variants.push(await runRedisVariant(ctx, "engine", variant));
    return {
      variants,
      ratios: [
        ratio(variants, "single", "engine single", "ceiling single"),
        ratio(variants, "batched", "engine batched", "ceiling batched", BATCHED_TARGET),
      ],
    };
  },
};
