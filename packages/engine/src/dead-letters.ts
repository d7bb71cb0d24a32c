import type { EngineContext } from "./engine-context";
import { invalidArgument } from "./errors";
import { queueId, type QueueRef } from "./keys";
import type { StoredTask } from "./task-record";

export interface DeadPage {
  readonly tasks: StoredTask[];
  /** Pass back to get the next page; undefined on the last page. */
  readonly cursor: string | undefined;
}

/** A page cursor: the last listed task's death time and id. */
const CURSOR = /^(\d{1,16}):([0-9A-Z]{26})$/;
/** A cursor before every dead task (no task dies at time 0). */
const START_CURSOR = `0:${"0".repeat(26)}`;

/** A count a call may ask for: an integer 1..`max`, else INVALID_ARGUMENT naming it. */
export function checkLimit(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 1 || value > max)
    throw invalidArgument(`${name} must be 1..${max}, got ${value}`);
}

/**
 * A page of the queue's DLQ, oldest first: at most `pageSize` tasks and `bounds.maxBytes`
 * bytes of them (records, states, payloads). With `firstAlways` (the default) the first
 * task is listed whatever its size; without it a page may hold no task and still have a
 * cursor, when the next task alone is over the bound.
 */
export async function listDead(
  ctx: EngineContext,
  queue: QueueRef,
  pageSize: number,
  cursor?: string,
  bounds: { maxBytes?: number; firstAlways?: boolean } = {},
): Promise<DeadPage> {
  checkLimit("page size", pageSize, 1000);
  let afterScore = "-inf";
  let afterId = "";
  if (cursor) {
    const match = CURSOR.exec(cursor);
    if (!match) throw invalidArgument("page token is not one this queue issued");
    afterScore = match[1]!;
    afterId = match[2]!;
  }
  const k = ctx.keys(queue);
  const reply = await ctx.runner.runBuffer<Buffer[]>(
    "dead-list",
    [k.tasks, k.state, k.payloads, k.dead],
    [
      afterScore,
      afterId,
      pageSize,
      bounds.maxBytes ?? Number.MAX_SAFE_INTEGER,
      bounds.firstAlways === false ? 0 : 1,
    ],
  );
  const tasks: StoredTask[] = [];
  let last = "";
  for (let i = 1; i < reply.length; i += 5) {
    tasks.push(ctx.toTask(queue, reply[i]!, reply[i + 1]!, reply[i + 2]!, reply[i + 3]!).task);
    last = `${reply[i + 4]!.toString()}:${reply[i]!.toString()}`;
  }
  const more = reply[0]!.toString() === "1";
  if (more && tasks.length === 0) return { tasks, cursor: cursor || START_CURSOR };
  return { tasks, cursor: tasks.length === pageSize || more ? last : undefined };
}

export interface DeadBatchOutcome {
  /** Tasks redriven or purged by this call. */
  readonly count: number;
  /** Dead tasks left in the queue. */
  readonly remaining: number;
  /** Requested ids that were not dead tasks of this queue. */
  readonly notFound: string[];
}

function decodeBatch(reply: Array<number | string>): DeadBatchOutcome {
  return {
    count: reply[0] as number,
    remaining: reply[1] as number,
    notFound: reply.slice(2) as string[],
  };
}

/** Moves dead tasks (the given ones, or the oldest) back to READY with attempts reset; at most `limit`. */
export async function redrive(
  ctx: EngineContext,
  queue: QueueRef,
  limit: number,
  ids: readonly string[] = [],
): Promise<DeadBatchOutcome> {
  checkLimit("limit", limit, 1000);
  const k = ctx.keys(queue);
  return byId(ctx, k.dead, limit, ids, async (chosen) =>
    decodeBatch(
      await ctx.runner.run(
        "redrive",
        [k.state, k.dead, ...k.ready],
        [ctx.clock.now(), limit, ...chosen],
      ),
    ),
  );
}

/** Deletes dead tasks (the given ones, or the oldest) for good; at most `limit`. */
export async function purge(
  ctx: EngineContext,
  queue: QueueRef,
  limit: number,
  ids: readonly string[] = [],
): Promise<DeadBatchOutcome> {
  checkLimit("limit", limit, 10_000);
  const k = ctx.keys(queue);
  return byId(ctx, k.dead, limit, ids, async (chosen) =>
    decodeBatch(
      await ctx.runner.run(
        "purge",
        [k.tasks, k.state, k.payloads, k.results, k.dead],
        [limit, ...chosen],
      ),
    ),
  );
}

/**
 * Runs a redrive or purge on named ids only. Without `ids` the oldest `limit` dead
 * tasks are read first and named: a script that picked "the oldest" itself would,
 * re-sent by ioredis after a reconnect lost its reply, act on the next oldest as
 * well (twice what was asked, told once). Named, a repeat finds them gone. Ids read
 * this way that are gone by the time the script runs (another call took them) are
 * not the caller's, so not reported as not found.
 */
async function byId(
  ctx: EngineContext,
  deadKey: string,
  limit: number,
  ids: readonly string[],
  run: (ids: readonly string[]) => Promise<DeadBatchOutcome>,
): Promise<DeadBatchOutcome> {
  if (ids.length > 0) {
    // an id named twice is one task: acted on once, reported once
    const named = [...new Set(ids)];
    // the script acts on `limit` of them at most, and would say nothing of the others
    if (named.length > limit)
      throw invalidArgument(
        `ids: ${named.length} named, more than the limit of ${limit}; name at most the limit, or raise it`,
      );
    return run(named);
  }
  const oldest = await ctx.redis.zrange(deadKey, "0", String(limit - 1));
  if (oldest.length === 0) return { count: 0, remaining: 0, notFound: [] };
  return { ...(await run(oldest)), notFound: [] };
}

export interface CleanupOutcome {
  readonly completed: number;
  readonly dead: number;
  readonly idempotencyKeys: number;
  /** The queue held nothing any more and left the shard's queue registry. */
  readonly forgotten: boolean;
}

/**
 * Retention of one queue (cleanup-7.lua); a queue it leaves with nothing is then taken
 * out of the shard's queue registry (forget-6.lua).
 */
export async function cleanup(
  ctx: EngineContext,
  queue: QueueRef,
  limit: number,
): Promise<CleanupOutcome> {
  const k = ctx.keys(queue);
  const [completed, dead, idempotencyKeys, empty] = await ctx.runner.run<
    [number, number, number, number]
  >(
    "cleanup",
    [k.tasks, k.state, k.payloads, k.results, k.completed, k.dead, k.idemidx],
    [ctx.clock.now(), ctx.completedRetentionMs, ctx.deadRetentionMs, limit],
  );
  const forgotten =
    empty === 1 &&
    (await ctx.runner.run<number>(
      "forget",
      [k.state, k.idemidx, k.completed, k.dead, k.moving, k.queues],
      [queueId(queue)],
    )) === 1;
  return { completed, dead, idempotencyKeys, forgotten };
}
