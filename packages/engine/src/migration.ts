import type { EngineContext } from "./engine-context";
import { invalidArgument, ScriptCode } from "./errors";
import { queueId, type QueueKeys, type QueueRef } from "./keys";
import { encodeRecord, encodeState, type StoredTask } from "./task-record";

/** A task on its way to another shard, with what its idempotency key still needs. */
export interface ExportedTask {
  readonly task: StoredTask;
  /** When the task's idempotency key stops deduplicating; 0 = no live key. */
  readonly idempotencyExpiresAt: number;
}

/**
 * Where a move puts a batch's READY tasks on the receiving shard, which also says
 * which end of each list export takes them from: `head` (a move's copying phase)
 * takes each list's newest tasks first and the receiver puts each batch ahead of what
 * it holds, so the batches rebuild the list in its order there, ahead of what
 * producers enqueued on it since the switch (FIFO within a priority); `tail` (a
 * move's draining phase, when what becomes ready on the source arrived after the rest
 * moved, and an abort's trip home) takes the oldest first and the receiver appends
 * them, as tasks arriving.
 */
export type Placement = "head" | "tail";

/**
 * A batch's bytes (payloads, records and states), at most, by default: what one import
 * request carries to the target (a first task larger than that goes alone).
 */
export const MOVE_BATCH_BYTES = 4 * 1024 * 1024;

/**
 * Reserves and returns the next batch of a queue's movable tasks (READY, then
 * SCHEDULED, then DEAD; never LEASED), READY ones from the end of their lists that
 * `placement` implies. Until `confirmExport` or `restoreExport`, the same batch is
 * returned again: a mover that crashed resumes where it was.
 */
export async function exportBatch(
  ctx: EngineContext,
  queue: QueueRef,
  limit: number,
  maxBytes = MOVE_BATCH_BYTES,
  placement: Placement = "head",
): Promise<ExportedTask[]> {
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
    throw invalidArgument(`limit must be 1..1000`);
  if (!Number.isInteger(maxBytes) || maxBytes < 1)
    throw invalidArgument(`max bytes must be a whole number above 0`);
  const k = ctx.keys(queue);
  const reply = await ctx.runner.runBuffer<Buffer[]>(
    "export",
    [k.tasks, k.state, k.payloads, k.scheduled, k.dead, k.moving, k.idemidx, ...k.ready],
    [ctx.clock.now(), limit, maxBytes, placement === "head" ? 1 : 0],
  );
  const out: ExportedTask[] = [];
  for (let i = 0; i < reply.length; i += 5) {
    out.push({
      task: ctx.toTask(queue, reply[i]!, reply[i + 1]!, reply[i + 2]!, reply[i + 3]!).task,
      idempotencyExpiresAt: Number(reply[i + 4]!.toString()),
    });
  }
  return keysStillTheirs(ctx, k, out);
}

/**
 * The exported tasks whose idempotency key now names another task keep no window: the
 * key expired and a later enqueue bound it again, and the window the script read is
 * that task's. Carried along, the target would bind the key to the old task first and
 * refuse the right binding after it (SET NX), answering the old task to a producer's
 * retry. (The script cannot read the key: it names no key it was not given.)
 */
async function keysStillTheirs(
  ctx: EngineContext,
  k: QueueKeys,
  batch: ExportedTask[],
): Promise<ExportedTask[]> {
  const keyed = batch.filter((e) => e.idempotencyExpiresAt > 0 && e.task.idemKey !== undefined);
  if (keyed.length === 0) return batch;
  const holders = await ctx.redis.mget(...keyed.map((e) => k.idem(e.task.idemKey!)));
  const lost = new Set(keyed.filter((e, i) => holders[i] !== e.task.id));
  return lost.size === 0
    ? batch
    : batch.map((e) => (lost.has(e) ? { ...e, idempotencyExpiresAt: 0 } : e));
}

/**
 * Which of `ids` the queue holds, in any state (reserved to move included), or took
 * in by an import of `migrationId` (since finished and deleted here, say).
 */
export async function heldTasks(
  ctx: EngineContext,
  queue: QueueRef,
  ids: readonly string[],
  migrationId: string,
): Promise<string[]> {
  if (ids.length > 1000) throw invalidArgument("at most 1000 task ids per call");
  if (ids.length === 0) return [];
  const k = ctx.keys(queue);
  const [states, landed] = await Promise.all([
    ctx.redis.hmget(k.state, ...ids),
    Promise.all(ids.map((id) => ctx.redis.sismember(k.landed(migrationId), id))),
  ]);
  return ids.filter((_, i) => states[i] !== null || landed[i] === 1);
}

/** The ids of the batch the mover holds reserved (at most one batch). */
export function reservedIds(ctx: EngineContext, queue: QueueRef): Promise<string[]> {
  return ctx.redis.zrange(ctx.keys(queue).moving, "0", "-1");
}

/**
 * Deletes reserved tasks the target confirmed it holds. Returns how many were deleted.
 * `homeFrom`: the aborted migration whose trip home this is; the ids also leave what
 * its imports recorded here (`heldTasks` no longer counts them).
 */
export function confirmExport(
  ctx: EngineContext,
  queue: QueueRef,
  ids: readonly string[],
  homeFrom?: string,
): Promise<number> {
  if (ids.length > 1000) throw invalidArgument("at most 1000 task ids per call");
  if (ids.length === 0) return Promise.resolve(0);
  const k = ctx.keys(queue);
  return ctx.runner.run<number>(
    "export-confirm",
    [
      k.tasks,
      k.state,
      k.payloads,
      k.results,
      k.moving,
      // (a key of the queue either way: unused without a migration)
      homeFrom ? k.landed(homeFrom) : k.moving,
    ],
    [homeFrom ? "1" : "0", ...ids],
  );
}

/** Puts every reserved task back in place (an aborted move). Returns how many. */
export function restoreExport(ctx: EngineContext, queue: QueueRef): Promise<number> {
  const k = ctx.keys(queue);
  return ctx.runner.run<number>(
    "export-restore",
    [k.state, k.scheduled, k.dead, k.moving, k.due, ...k.ready],
    [queueId(queue)],
  );
}

export interface ImportOutcome {
  readonly imported: string[];
  readonly alreadyPresent: string[];
}

const IMPORTABLE = new Set(["READY", "SCHEDULED", "DEAD"]);

/** How long a target keeps the ids a migration's imports stored (for an abort), ms. */
export const LANDED_TTL_MS = 7 * 24 * 3600 * 1000;

/**
 * Stores tasks moved from another shard, idempotently by id, keeping attempts,
 * run-at, priority, lease sequence and the idempotency key with its remaining window;
 * READY ones at the end of their lists `placement` names, in the batch's order.
 * With `migrationId`, records the ids stored or found in that migration's landed set.
 */
export async function importTasks(
  ctx: EngineContext,
  queue: QueueRef,
  tasks: readonly ExportedTask[],
  migrationId?: string,
  placement: Placement = "head",
): Promise<ImportOutcome> {
  if (tasks.length > 1000) throw invalidArgument("at most 1000 tasks per import");
  if (tasks.length === 0) return { imported: [], alreadyPresent: [] };
  const k = ctx.keys(queue);
  const keys = [
    k.tasks,
    k.state,
    k.payloads,
    k.scheduled,
    k.dead,
    k.idemidx,
    k.due,
    k.queues,
    ...k.ready,
    k.moving,
    // (without a migration: declared, never written)
    migrationId ? k.landed(migrationId) : k.moving,
  ];
  const args: Array<string | number | Uint8Array> = [
    ctx.clock.now(),
    queueId(queue),
    tasks.length,
    migrationId ? LANDED_TTL_MS : 0,
    placement === "head" ? 1 : 0,
  ];
  tasks.forEach(({ task, idempotencyExpiresAt }, i) => {
    if (task.command !== queue.command || task.tenant !== queue.tenant) {
      throw invalidArgument(
        `tasks[${i}] belongs to ${task.command}/${task.tenant}, not ${queue.command}/${queue.tenant}`,
      );
    }
    if (!IMPORTABLE.has(task.state))
      throw invalidArgument(
        `tasks[${i}] is ${task.state}; only READY, SCHEDULED and DEAD tasks move`,
      );
    let index = 0;
    if (task.idemKey !== undefined && idempotencyExpiresAt > 0) {
      keys.push(k.idem(task.idemKey));
      index = keys.length;
    }
    args.push(
      task.id,
      encodeRecord(task, ctx.limits.defaultBackoff),
      encodeState(task),
      task.payload,
      index,
      task.idemKey ?? "",
      idempotencyExpiresAt,
    );
  });
  const codes = await ctx.runner.run<number[]>("import", keys, args);
  const out: ImportOutcome = { imported: [], alreadyPresent: [] };
  codes.forEach((code, i) => {
    const id = tasks[i]!.task.id;
    if (code === ScriptCode.Ok) out.imported.push(id);
    else if (code === ScriptCode.AlreadyDone) out.alreadyPresent.push(id);
  });
  return out;
}

/** A live idempotency key of a queue and the task id it deduplicates to. */
export interface IdempotencyBinding {
  readonly key: string;
  readonly taskId: string;
  readonly expiresAt: number;
}

/** A page of live idempotency keys, and where the next page starts. */
export interface BindingsPage {
  readonly bindings: IdempotencyBinding[];
  /** Pass as `after` for the next page; undefined when this was the last. */
  readonly next: number | undefined;
}

/**
 * One page of a queue's live idempotency keys (expiring after `after`, ms; the first
 * page: after now), with the task each deduplicates to: what a mover binds on the
 * target for tasks that do not move themselves (completed, or leased). Pages follow
 * the expiry, not an offset, so keys that expire or are added meanwhile shift
 * nothing; every key of the last expiry a page reaches is in it (a page may then
 * hold more than `limit`). A key whose string expired since is left out.
 */
export async function idempotencyBindings(
  ctx: EngineContext,
  queue: QueueRef,
  after: number | undefined,
  limit: number,
): Promise<BindingsPage> {
  const k = ctx.keys(queue);
  const from = `(${after ?? ctx.clock.now()}`;
  const flat = await ctx.redis.zrangebyscore(
    k.idemidx,
    from,
    "+inf",
    "WITHSCORES",
    "LIMIT",
    "0",
    String(limit),
  );
  const entries: { key: string; expiresAt: number }[] = [];
  for (let i = 0; i < flat.length; i += 2)
    entries.push({ key: flat[i]!, expiresAt: Number(flat[i + 1]) });
  const full = entries.length === limit;
  const last = entries.at(-1)?.expiresAt;
  if (full && last !== undefined) {
    // more keys may share the last expiry than the page held: take all of them
    const ties = await ctx.redis.zrangebyscore(k.idemidx, String(last), String(last));
    entries.splice(entries.findIndex((e) => e.expiresAt === last));
    for (const key of ties) entries.push({ key, expiresAt: last });
  }
  if (entries.length === 0) return { bindings: [], next: undefined };
  const ids = await ctx.redis.mget(...entries.map((e) => k.idem(e.key)));
  const bindings: IdempotencyBinding[] = [];
  entries.forEach((e, i) => {
    const taskId = ids[i];
    if (taskId) bindings.push({ key: e.key, taskId, expiresAt: e.expiresAt });
  });
  return { bindings, next: full ? last : undefined };
}

/** Which of `keys` are live in the queue, with the task each deduplicates to. */
export async function lookupIdempotencyKeys(
  ctx: EngineContext,
  queue: QueueRef,
  keys: readonly string[],
): Promise<IdempotencyBinding[]> {
  if (keys.length > 1000) throw invalidArgument("at most 1000 idempotency keys per call");
  if (keys.length === 0) return [];
  const k = ctx.keys(queue);
  const now = ctx.clock.now();
  const ids = await ctx.redis.mget(...keys.map((key) => k.idem(key)));
  const found = keys.flatMap((key, i) => (ids[i] ? [{ key, taskId: ids[i]! }] : []));
  const expiries = await Promise.all(found.map((f) => ctx.redis.zscore(k.idemidx, f.key)));
  return found.flatMap((f, i) => {
    const expiresAt = Number(expiries[i] ?? 0);
    return expiresAt > now ? [{ ...f, expiresAt }] : [];
  });
}

/**
 * Binds idempotency keys moved from another shard (SET NX with the rest of their
 * window; an already bound or expired key is left alone). Returns how many it bound.
 */
export async function bindIdempotencyKeys(
  ctx: EngineContext,
  queue: QueueRef,
  bindings: readonly IdempotencyBinding[],
): Promise<number> {
  if (bindings.length > 1000) throw invalidArgument("at most 1000 idempotency keys per call");
  const k = ctx.keys(queue);
  const now = ctx.clock.now();
  // sent together (one round trip on an enqueue's path, not one per key); each key's
  // index entry follows its own SET
  const live = bindings.filter((b) => b.expiresAt > now && b.key && b.taskId);
  const set = await Promise.all(
    live.map((b) => ctx.redis.set(k.idem(b.key), b.taskId, "PX", b.expiresAt - now, "NX")),
  );
  const fresh = live.filter((_, i) => set[i]);
  await Promise.all(fresh.map((b) => ctx.redis.zadd(k.idemidx, b.expiresAt, b.key)));
  const bound = fresh.length;
  // registered last: a queue holding keys and no task must be one the mover and
  // retention cleanup visit, and a cleanup between a key and its registration would
  // forget a queue registered first. A call sent again registers it even when every
  // key was bound before; registering a queue left with nothing costs nothing.
  if (bindings.some((b) => b.expiresAt > now)) await ctx.redis.sadd(k.queues, queueId(queue));
  return bound;
}
