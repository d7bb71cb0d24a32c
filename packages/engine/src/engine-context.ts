import { randomInt } from "node:crypto";
import type { Redis } from "ioredis";
import { SystemClock, type Clock } from "./clock";
import { invalidArgument } from "./errors";
import { NONCE_LIMIT } from "./lease-token";
import {
  queueId,
  queueKeys,
  shardKeys,
  SHARD_ID_PATTERN,
  type KeyLayout,
  type QueueKeys,
  type QueueRef,
  type ShardKeys,
} from "./keys";
import { LeaseGiveBacks, report, type GiveBackReason } from "./give-back";
import { ScriptRunner } from "./script-runner";
import { MAX_BATCH } from "./lease-options";
import { DEFAULT_TASK_LIMITS, type TaskLimits } from "./task-spec";
import { TaskIdGenerator } from "./task-id";
import { decodeTask, type StoredTask } from "./task-record";

export interface EngineOptions {
  /** This shard's id; it is part of every key (sharded layout) and every lease token. */
  readonly shard: string;
  /** First segment of every key. Default "codeq". */
  readonly keyPrefix?: string;
  /** "legacy" drops the shard segment (single-shard deployments). Default "sharded". */
  readonly layout?: KeyLayout;
  readonly clock?: Clock;
  /**
   * Source of [0,1) values for jitter. Default Math.random. Given (tests), lease
   * nonces are drawn from it too; otherwise from the crypto module, so a holder cannot
   * guess another delivery's nonce from those it has seen.
   */
  readonly random?: () => number;
  /** How long an idempotency key deduplicates, ms. Default 24 h. */
  readonly idempotencyWindowMs?: number;
  /** How long COMPLETED tasks are kept, ms; 0 deletes at ack. Default 10 min. */
  readonly completedRetentionMs?: number;
  /** How long DEAD tasks are kept, ms. Default 7 days. */
  readonly deadRetentionMs?: number;
  /** Due scheduled tasks a lease promotes first, at most. Default 1000. */
  readonly promoteLimit?: number;
  readonly limits?: Partial<TaskLimits>;
  /**
   * Called when tasks a lease call took but never delivered (its reply was lost to a
   * reconnect, or they did not fit in its answer) were made ready again, so that
   * waiters can be woken.
   */
  readonly onLeasesGivenBack?: (queue: QueueRef, count: number, reason: GiveBackReason) => void;
  /** Called when giving such tasks back failed; it is tried again until their deadline. */
  readonly onGiveBackFailed?: (err: unknown) => void;
  /**
   * Called when a lease call left `count` tasks ready that waiters may not be woken
   * for otherwise, so that they can be: due scheduled tasks it made ready (before the
   * due loop got to them: that loop, finding them promoted, will not say so), or the
   * tasks behind the byte bound it stopped at (the waiter woken for them took fewer).
   */
  readonly onTasksLeftReady?: (queue: QueueRef, count: number) => void;
}

/** Everything the engine's operations share; built once per engine. */
export interface EngineContext {
  readonly shard: string;
  readonly runner: ScriptRunner;
  readonly redis: Redis;
  readonly clock: Clock;
  readonly random: () => number;
  /** A lease nonce: 1 .. 2^46 - 1 (see EngineOptions.random). */
  readonly nonce: () => number;
  readonly ids: TaskIdGenerator;
  /** The default backoff policy as JSON (for scripts that retry tasks stored without a record). */
  readonly defaultBackoffJson: string;
  readonly limits: TaskLimits;
  readonly idempotencyWindowMs: number;
  readonly completedRetentionMs: number;
  readonly deadRetentionMs: number;
  readonly promoteLimit: number;
  readonly shardKeys: ShardKeys;
  readonly giveBacks: LeaseGiveBacks;
  /** EngineOptions.onTasksLeftReady (never throws). */
  onLeftReady(queue: QueueRef, count: number): void;
  keys(queue: QueueRef): QueueKeys;
  /** Turns a script's id, record, state, payload (and result) into a task and its delivery nonce. */
  toTask(
    queue: QueueRef,
    id: Buffer | string,
    record: Buffer | string,
    state: Buffer | string,
    payload: Buffer | string,
    result?: Buffer | string,
  ): { task: StoredTask; nonce: number };
}

function nonNegative(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 0)
    throw invalidArgument(`${name} must be a non-negative integer`);
  return v;
}

/** Due tasks a lease promotes first: 1..MAX_BATCH, as the due loop's promote (Lua's unpack limit). */
function promoteLimit(value: number | undefined): number {
  const v = nonNegative("promoteLimit", value, MAX_BATCH) || 1;
  if (v > MAX_BATCH) throw invalidArgument(`promoteLimit must be at most ${MAX_BATCH}, got ${v}`);
  return v;
}

export async function createEngineContext(
  redis: Redis,
  options: EngineOptions,
): Promise<EngineContext> {
  if (!SHARD_ID_PATTERN.test(options.shard))
    throw invalidArgument(`shard id must match ${SHARD_ID_PATTERN.source}`);
  const layout = {
    prefix: options.keyPrefix ?? "codeq",
    layout: options.layout ?? "sharded",
    shard: options.shard,
  } as const;
  const shard = shardKeys(layout);
  const keyCache = new Map<string, QueueKeys>();
  const limits: TaskLimits = { ...DEFAULT_TASK_LIMITS, ...options.limits };
  const runner = new ScriptRunner(redis);
  const clock = options.clock ?? new SystemClock();
  return {
    shard: options.shard,
    runner,
    redis,
    clock,
    random: options.random ?? Math.random,
    nonce: options.random
      ? () => 1 + Math.floor(options.random!() * (NONCE_LIMIT - 1))
      : () => randomInt(1, NONCE_LIMIT),
    ids: new TaskIdGenerator(),
    limits,
    defaultBackoffJson: JSON.stringify(limits.defaultBackoff),
    idempotencyWindowMs:
      nonNegative("idempotencyWindowMs", options.idempotencyWindowMs, 24 * 3600_000) || 1,
    completedRetentionMs: nonNegative(
      "completedRetentionMs",
      options.completedRetentionMs,
      600_000,
    ),
    deadRetentionMs: nonNegative("deadRetentionMs", options.deadRetentionMs, 7 * 24 * 3600_000),
    promoteLimit: promoteLimit(options.promoteLimit),
    shardKeys: shard,
    giveBacks: new LeaseGiveBacks(redis, runner, clock, {
      onGivenBack: options.onLeasesGivenBack ?? (() => undefined),
      onFailed: options.onGiveBackFailed ?? (() => undefined),
    }),
    onLeftReady(queue, count) {
      report(() => options.onTasksLeftReady?.(queue, count));
    },
    keys(queue) {
      const id = queueId(queue);
      let keys = keyCache.get(id);
      if (!keys) {
        keys = queueKeys(queue, layout);
        if (keyCache.size > 10_000) keyCache.clear();
        keyCache.set(id, keys);
      }
      return keys;
    },
    toTask(queue, rawId, record, state, payload, result) {
      const id = typeof rawId === "string" ? rawId : rawId.toString("latin1");
      const { task, nonce } = decodeTask(id, record, state, limits.defaultBackoff);
      const stored = task as StoredTask & {
        command: string;
        tenant: string;
        shard: string;
        payload: Buffer;
        result?: Buffer;
      };
      stored.command = queue.command;
      stored.tenant = queue.tenant;
      stored.shard = options.shard;
      stored.payload = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
      if (result && result.length > 0)
        stored.result = Buffer.isBuffer(result) ? result : Buffer.from(result);
      return { task: stored, nonce };
    },
  };
}
