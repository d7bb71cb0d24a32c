import type { EngineContext } from "./engine-context";
import { parseQueueId, queueId, type QueueRef } from "./keys";

/** Takes back up to `limit` expired leases of one queue. */
export async function reap(
  ctx: EngineContext,
  queue: QueueRef,
  limit: number,
): Promise<{ reaped: number; dead: number }> {
  const k = ctx.keys(queue);
  const [reaped, dead] = await ctx.runner.run<[number, number]>(
    "reap",
    [k.tasks, k.state, k.scheduled, k.leased, k.dead, k.due, ...k.ready],
    [ctx.clock.now(), queueId(queue), ctx.random(), limit, ctx.defaultBackoffJson],
  );
  return { reaped, dead };
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

/** The earliest time any queue of this shard has background work, or undefined. */
export async function nextDueAt(ctx: EngineContext): Promise<number | undefined> {
  const first = await ctx.redis.zrange(ctx.shardKeys.due, "0", "0", "WITHSCORES");
  return first[1] === undefined ? undefined : Number(first[1]);
}
