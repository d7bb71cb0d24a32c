import type { EngineContext } from "./engine-context";
import { parseQueueId, queueId, type QueueRef } from "./keys";
import type { StoredTask } from "./task-record";

/** One task of one queue, or undefined. */
export async function getTask(
  ctx: EngineContext,
  queue: QueueRef,
  id: string,
): Promise<StoredTask | undefined> {
  const k = ctx.keys(queue);
  const reply = await ctx.runner.runBuffer<Buffer[]>(
    "get",
    [k.tasks, k.state, k.payloads, k.results],
    [id],
  );
  if (reply.length === 0) return undefined;
  return ctx.toTask(queue, id, reply[0]!, reply[1]!, reply[2]!, reply[3]).task;
}

export interface QueueStats {
  /** Index i: READY tasks of priority i. */
  readonly readyByPriority: number[];
  readonly ready: number;
  readonly scheduled: number;
  readonly leased: number;
  readonly dead: number;
  readonly completed: number;
  /** Reserved by a migration mover and not yet confirmed. */
  readonly moving: number;
}

export async function stats(ctx: EngineContext, queue: QueueRef): Promise<QueueStats> {
  const k = ctx.keys(queue);
  const c = await ctx.runner.run<number[]>(
    "stats",
    [...k.ready, k.scheduled, k.leased, k.dead, k.completed, k.moving],
    [],
  );
  const readyByPriority = c.slice(0, 10);
  return {
    readyByPriority,
    ready: readyByPriority.reduce((a, b) => a + b, 0),
    scheduled: c[10]!,
    leased: c[11]!,
    dead: c[12]!,
    completed: c[13]!,
    moving: c[14]!,
  };
}

/**
 * Some of this shard's registry, from `cursor` ("0" to start): at least `count` queues
 * unless the registry ends first (one SSCAN may give more), and the cursor to go on
 * from ("0" once the registry was walked to its end). A walk from "0" back to "0"
 * meets every queue that stayed in the registry throughout, once or (rarely) twice.
 */
export async function queuePage(
  ctx: EngineContext,
  cursor: string,
  count: number,
): Promise<{ next: string; queues: QueueRef[] }> {
  const out: QueueRef[] = [];
  let next = cursor;
  do {
    const [after, ids] = await ctx.redis.sscan(ctx.shardKeys.queues, next, "COUNT", count);
    next = after;
    for (const id of ids) out.push(parseQueueId(id));
  } while (next !== "0" && out.length < count);
  return { next, queues: out };
}

/** The queues in this shard's registry (every one that holds anything); only `command`'s when given. */
export async function queues(ctx: EngineContext, command?: string): Promise<QueueRef[]> {
  const out: QueueRef[] = [];
  let cursor = "0";
  do {
    const page = await queuePage(ctx, cursor, 1000);
    cursor = page.next;
    for (const ref of page.queues)
      if (command === undefined || ref.command === command) out.push(ref);
  } while (cursor !== "0");
  return out.sort((a, b) => (queueId(a) < queueId(b) ? -1 : 1));
}
