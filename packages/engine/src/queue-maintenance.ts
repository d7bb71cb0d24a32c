import type { EngineContext } from "./engine-context";
import { parseQueueId, queueId, type QueueRef } from "./keys";

/** What a reap did: leases taken back, and of them, tasks dead-lettered and tasks ready at once. */
export interface Reaped {
  readonly reaped: number;
  readonly dead: number;
  /** Ready again at once (a zero backoff); the rest wait out their backoff, scheduled. */
  readonly ready: number;
}

/** Takes back up to `limit` expired leases of one queue. */
export async function reap(ctx: EngineContext, queue: QueueRef, limit: number): Promise<Reaped> {
  const k = ctx.keys(queue);
  const [reaped, dead, ready] = await ctx.runner.run<[number, number, number]>(
    "reap",
    [k.tasks, k.state, k.scheduled, k.leased, k.dead, k.due, ...k.ready],
    [ctx.clock.now(), queueId(queue), ctx.random(), limit, ctx.defaultBackoffJson],
  );
  return { reaped, dead, ready };
}

/** Makes up to `limit` due scheduled tasks of one queue ready. */
export function promote(ctx: EngineContext, queue: QueueRef, limit: number): Promise<number> {
  const k = ctx.keys(queue);
  return ctx.runner.run<number>(
    "promote",
    [k.state, k.scheduled, k.leased, k.due, ...k.ready],
    [ctx.clock.now(), queueId(queue), limit],
  );
}

/** Queues where a scheduled task is due or a lease has expired by now, earliest first. */
export async function dueQueues(ctx: EngineContext, limit: number): Promise<QueueRef[]> {
  const ids = await ctx.redis.zrangebyscore(
    ctx.shardKeys.due,
    "-inf",
    ctx.clock.now(),
    "LIMIT",
    0,
    limit,
  );
  return ids.map(parseQueueId);
}

/**
 * The earliest time any queue of this shard has background work, or undefined; with
 * `passOver`, of the first `among` queues in time, the earliest it does not pass over.
 */
export async function nextDueAt(
  ctx: EngineContext,
  passOver?: (queue: QueueRef) => boolean,
  among = 1,
): Promise<number | undefined> {
  const first = await ctx.redis.zrange(ctx.shardKeys.due, "0", String(among - 1), "WITHSCORES");
  for (let i = 0; i + 1 < first.length; i += 2)
    if (!passOver?.(parseQueueId(first[i]!))) return Number(first[i + 1]);
  return undefined;
}
