import { ServerError, Status } from "nice-grpc";
import { checkTask, DEFAULT_TASK_LIMITS, EngineError, type TaskLimits } from "@codeq/engine";
import type {
  EnqueueBatchRequest,
  EnqueueBatchResponse,
  EnqueueRequest,
  EnqueueResult,
} from "@codeq/proto";
import { CALLER_CODES } from "@codeq/server-kit";
import { failedEnqueueResults, specFromWire } from "@codeq/wire";
import { batchCommands } from "./batch-bytes";
import { passThrough } from "./wire-bytes";
import { storedNothing, type Unstored } from "./enqueue-charge";
import { FencedError, type Forward, type Routing } from "./routing";

/** The most items one EnqueueBatch (or EnqueueStream message) may carry. */
export const MAX_BATCH = 1000;

/**
 * Checks a whole batch as a shard would, naming items by their index in the
 * caller's batch, before any of it is split across shards: validation stays all
 * or nothing however many shards the batch touches.
 */
export function checkBatch(tasks: readonly EnqueueRequest[], limits: TaskLimits): void {
  if (tasks.length === 0)
    throw new ServerError(Status.INVALID_ARGUMENT, "tasks: at least one item is required");
  if (tasks.length > MAX_BATCH)
    throw new ServerError(
      Status.INVALID_ARGUMENT,
      `tasks: at most ${MAX_BATCH} items per call, got ${tasks.length}`,
    );
  const now = Date.now();
  try {
    tasks.forEach((t, i) => checkTask(t.command, specFromWire(t), limits, now, i));
  } catch (err) {
    if (err instanceof EngineError) throw new ServerError(err.status, err.message);
    throw err;
  }
}

/**
 * Refuses a batch of no items or too many, as `checkBatch` does, reading only its
 * size; returns that size.
 */
export function checkBatchSize(req: EnqueueBatchRequest, routing: Routing): number {
  const n = batchCommands(req).length;
  if (n === 0 || n > MAX_BATCH) checkBatch(req.tasks, taskLimits(routing));
  return n;
}

export function taskLimits(routing: Routing): TaskLimits {
  return { ...DEFAULT_TASK_LIMITS, payloadCapBytes: routing.config.payloadCapBytes };
}

const failed = (code: Status, message: string): EnqueueResult =>
  failedEnqueueResults(1, { code, message })[0]!;

/**
 * Stores a batch. When every item goes to one shard, the caller's request goes to it
 * as it came (the shard checks it, all or nothing) and its answer comes back as it
 * is. Otherwise the batch is checked whole here first, then split by current shard,
 * sent in parallel, and answered in the caller's order. Items a shard refused because
 * it no longer owns their queue are re-resolved after a map refresh and sent once
 * more; items whose shard fails get that failure as their status (UNAVAILABLE may be
 * retried by the caller).
 */
export async function enqueueBatch(
  routing: Routing,
  f: Forward,
  req: EnqueueBatchRequest,
  /** Told of the items of a split batch that were not stored (their charge goes back). */
  unstored: Unstored,
): Promise<EnqueueBatchResponse> {
  // a batch read as BatchBytes is decoded only if it is split or checked here; one of
  // no items or too many was refused before (`checkBatchSize`)
  const commands = batchCommands(req);
  const tenant = f.identity.tenant;
  const first = routing.currentShard(commands[0]!, tenant);
  let retried = false;
  if (commands.every((c) => c === commands[0] || routing.currentShard(c, tenant) === first)) {
    try {
      const raw = await routing.sendFenced(first, (conn, onTrailer) =>
        routing.storeBatch(conn, f, req, onTrailer),
      );
      return passThrough(raw);
    } catch (err) {
      if (!(err instanceof FencedError)) throw err;
      await routing.beforeFencedRetry(f, 1);
      // then as a split batch, on the map as it is now: its one retry, as a single
      // Enqueue's (a part refused again fails UNAVAILABLE, not sent a third time)
      retried = true;
    }
  }
  const tasks = req.tasks;
  checkBatch(tasks, taskLimits(routing));
  return { results: await storeSplit(routing, f, tasks, unstored, retried) };
}

async function storeSplit(
  routing: Routing,
  f: Forward,
  tasks: readonly EnqueueRequest[],
  unstored: Unstored,
  /** The batch was refused once already and the map refreshed: no retry is left. */
  retried: boolean,
): Promise<EnqueueResult[]> {
  const results: EnqueueResult[] = new Array(tasks.length);
  const refused: { error: ServerError; items: number }[] = [];
  const send = (indexes: readonly number[]) =>
    sendSplit(routing, f, tasks, indexes, results, refused, unstored);
  let fenced = await send([...tasks.keys()]);
  if (fenced.length > 0 && !retried) {
    await routing.beforeFencedRetry(f, fenced.length);
    fenced = await send(fenced.flatMap((x) => x.indexes));
  }
  for (const { indexes, err } of fenced) {
    unstored(indexes.length);
    for (const i of indexes)
      results[i] = failed(Status.UNAVAILABLE, `${err.details} (after a map refresh)`);
  }
  // every shard refused its part as a whole for the caller's sake (its rights, say):
  // the call fails as it would on one shard, not answers OK with every item failed
  const total = refused.reduce((n, e) => n + e.items, 0);
  if (total === tasks.length && refused[0]) throw refused[0].error;
  return results;
}

interface Fenced {
  readonly indexes: number[];
  readonly err: FencedError;
}

async function sendSplit(
  routing: Routing,
  f: Forward,
  tasks: readonly EnqueueRequest[],
  indexes: readonly number[],
  results: EnqueueResult[],
  /** Parts a shard refused as a whole with a caller's error (CALLER_CODES), and their sizes. */
  refused: { error: ServerError; items: number }[],
  unstored: Unstored,
): Promise<Fenced[]> {
  const byShard = new Map<string, number[]>();
  for (const i of indexes) {
    const shard = routing.currentShard(tasks[i]!.command, f.identity.tenant);
    let list = byShard.get(shard);
    if (!list) byShard.set(shard, (list = []));
    list.push(i);
  }
  const fenced: Fenced[] = [];
  await Promise.all(
    [...byShard].map(async ([shard, idx]) => {
      try {
        const res = await routing.sendFenced(shard, (conn, onTrailer) =>
          routing.storeBatch(conn, f, { tasks: idx.map((i) => tasks[i]!) }, onTrailer),
        );
        const answered = res.value.results;
        idx.forEach((i, j) => (results[i] = answered[j] ?? failed(Status.INTERNAL, "no result")));
      } catch (err) {
        if (err instanceof FencedError) fenced.push({ indexes: idx, err });
        else {
          const e =
            err instanceof ServerError
              ? err
              : new ServerError(Status.UNAVAILABLE, `shard ${shard}: ${String(err)}`);
          if (CALLER_CODES.has(e.code)) refused.push({ error: e, items: idx.length });
          if (storedNothing(e)) unstored(idx.length);
          for (const i of idx) results[i] = failed(e.code, e.details);
        }
      }
    }),
  );
  return fenced;
}
