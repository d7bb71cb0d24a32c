import { QueueEngine, ScriptCode, type Delivery, type SettleOutcome } from "@codeq/engine";
import type { ChainableCommander, Redis } from "ioredis";
import { runRedisVariant, type RedisVariant } from "../redis-variant";
import { ratio, type Scenario, type VariantResult } from "../scenario";

/**
 * The engine's enqueue → lease → ack cycle, once through QueueEngine (one script per
 * step, every guarantee) and twice as plain Redis commands on the same server, with the
 * same connection settings, concurrency (64 loops) and 64-byte payload:
 *
 * - record ceiling: the cycle kept with the data the engine keeps per task (its
 *   record, here the engine's 81-character state string, in a per-queue hash; its
 *   payload in a second hash; its id in a ready list, then in an in-flight zset scored
 *   by deadline; at ack the record rewritten as completed, the payload dropped and the
 *   id appended to a completed list for retention, as the engine does) in the fewest pipelined commands,
 *   without what makes the engine an engine: no state checks, no attempts or lease
 *   sequence, no fencing, no priorities or schedule, no idempotency, no atomicity (no
 *   scripts, no MULTI). This is the target's denominator: the engine cannot keep less
 *   data, so what it loses against this ceiling is the price of its guarantees and of
 *   its code, which is what the target limits.
 * - list floor: ids in bare lists and sets, no record and no payload kept anywhere. A
 *   different, cheaper cycle (nothing to read back, nothing to retain), reported for
 *   reference only: the engine cannot approach it by any amount of tuning.
 */

const CONCURRENCY = 64;
const BATCH = 100;
const LEASE_MS = 30_000;
/** At least the batched engine's share of the batched record ceiling (the target). */
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

/** Sends a pipeline and throws its first command error (a wrong benchmark, not a result). */
async function exec(pipeline: ChainableCommander): Promise<void> {
  for (const [err] of (await pipeline.exec()) ?? []) if (err) throw err;
}

/** Unique 26-character ids, as long as the engine's. */
function ids(): () => string {
  let seq = 0;
  return () => (++seq).toString(36).padStart(26, "0");
}

/**
 * A task's record as the engine keeps it for a task with no headers, idempotency key
 * or custom backoff: its 81-character fixed-width state string (docs/storage.md), and
 * no JSON. (A JSON record of the engine's former shape, about 260 bytes, makes this
 * ceiling about 20% slower.)
 */
function record(state: "R" | "C", now: number): string {
  const [attempts, seq, until] = state === "R" ? ["0000", "0", 0] : ["0001", "1", now];
  return `${state}0${attempts}0005${seq.padStart(10, "0")}${"7".repeat(14)}${now}${String(until).padStart(13, "0")}00030000${now}`;
}

/** [a(id0), b(id0), a(id1), b(id1), …]: the arguments of a variadic HSET or ZADD. */
function pairs<A, B>(ids: readonly string[], a: (id: string) => A, b: (id: string) => B) {
  const out: (A | B)[] = [];
  for (const id of ids) out.push(a(id), b(id));
  return out;
}

const same = (id: string) => id;

/**
 * Record ceiling, `batch` tasks per cycle, 3 round trips + 1 per lease round:
 *   enqueue: HSET records <id record>…; HSET payloads <id payload>…; RPUSH ready <ids>
 *   lease:   LPOP ready <n>, then HMGET records <ids>; HMGET payloads <ids>; ZADD inflight <deadline id>…
 *   ack:     ZREM inflight <ids>; HDEL payloads <ids>; HSET records <id completed record>…;
 *            RPUSH completed <ids> (a list, as the engine keeps it)
 * Each line after the first LPOP is one pipeline. The lease needs two round trips
 * because, without a script, the ids must come back before their records can be read;
 * the engine does a step in one. (LPOP repeats while a concurrent loop has taken some
 * of this loop's tasks, as the engine's lease does.)
 */
function recordCeiling(batch: number): RedisVariant {
  const single = batch === 1;
  return {
    name: `record ceiling ${single ? "single" : "batched"}`,
    unit: single ? "cycles" : "tasks",
    shape: `HSET record+payload, RPUSH ${batch}; LPOP, HMGET ×2 + ZADD; ZREM, HDEL, HSET, RPUSH`,
    concurrency: CONCURRENCY,
    async open(redis: Redis, prefix) {
      const [records, payloads] = [`${prefix}:records`, `${prefix}:payloads`];
      const [ready, inflight, completed] = [
        `${prefix}:ready`,
        `${prefix}:inflight`,
        `${prefix}:completed`,
      ];
      const nextId = ids();
      return async () => {
        const now = Date.now();
        const batchIds = Array.from({ length: batch }, nextId);
        await exec(
          redis
            .pipeline()
            .hset(records, ...pairs(batchIds, same, () => record("R", now)))
            .hset(payloads, ...pairs(batchIds, same, () => PAYLOAD))
            .rpush(ready, ...batchIds),
        );
        const leased: string[] = [];
        while (leased.length < batch) {
          const got = await redis.lpop(ready, batch - leased.length);
          if (!got || got.length === 0) break;
          const deadline = Date.now() + LEASE_MS;
          await exec(
            redis
              .pipeline()
              .hmget(records, ...got)
              .hmgetBuffer(payloads, ...got)
              .zadd(inflight, ...pairs(got, () => deadline, same)),
          );
          leased.push(...got);
        }
        if (leased.length === 0) return 0;
        const done = Date.now();
        await exec(
          redis
            .pipeline()
            .zrem(inflight, ...leased)
            .hdel(payloads, ...leased)
            .hset(records, ...pairs(leased, same, () => record("C", done)))
            .rpush(completed, ...leased),
        );
        return leased.length;
      };
    },
  };
}

/** A unique item per task: "<id>|<payload>", so a lease returns the payload as the engine's does. */
function items(): (n: number) => string[] {
  let seq = 0;
  return (n) => Array.from({ length: n }, () => `${(++seq).toString(36)}|${PAYLOAD_TEXT}`);
}

/**
 * List floor, one task per cycle, 3 commands, no record kept:
 *   RPUSH ready <item>; LMOVE ready inflight LEFT RIGHT; LREM inflight 1 <item>
 * LMOVE is the one atomic command that leases with an in-flight record. LREM scans
 * the in-flight list, but it never holds more than one item per loop (64), so the
 * scan costs little next to a round trip.
 */
const listFloorSingle: RedisVariant = {
  name: "list floor single",
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
 * List floor, 100 tasks per cycle, 4 commands, no record kept:
 *   RPUSH ready <100 items>; LPOP ready 100; SADD inflight <items>; SREM inflight <items>
 * (LPOP and SADD repeat while a concurrent loop has taken some of this loop's tasks.)
 * The in-flight record is a set, not a list: up to 6,400 items are in flight, and 100
 * LREMs over a list that long would be slow for a reason the engine does not share.
 */
const listFloorBatched: RedisVariant = {
  name: "list floor batched",
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
  recordCeiling(1),
  listFloorSingle,
  engineBatched,
  recordCeiling(BATCH),
  listFloorBatched,
];

export const engineScenario: Scenario = {
  name: "engine",
  summary: "QueueEngine enqueue→lease→ack on one connection vs the plain-Redis record ceiling",
  async run(ctx) {
    const variants: VariantResult[] = [];
    for (const variant of VARIANTS) variants.push(await runRedisVariant(ctx, "engine", variant));
    return {
      variants,
      ratios: [
        ratio(variants, "single", "engine single", "record ceiling single"),
        ratio(variants, "batched", "engine batched", "record ceiling batched", BATCHED_TARGET),
        ratio(variants, "single vs floor (info)", "engine single", "list floor single"),
        ratio(variants, "batched vs floor (info)", "engine batched", "list floor batched"),
      ],
    };
  },
};
