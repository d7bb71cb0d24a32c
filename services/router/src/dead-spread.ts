import { ServerError } from "nice-grpc";
import { DEFAULT_REDRIVE_RATE, MAX_REDRIVE_TASKS } from "@codeq/common";
import type {
  PurgeDeadRequest,
  PurgeDeadResponse,
  RedriveDeadRequest,
  RedriveDeadResponse,
} from "@codeq/proto";
import { CALLER_CODES } from "@codeq/server-kit";
import { asServerError } from "./fan-out";
import type { Forward, Routing } from "./routing";
import type { ShardConn } from "./shard-pool";

/** RedriveDead over the queue's `shards` (see `spreadDead`). */
export function redriveDead(
  routing: Routing,
  f: Forward,
  req: RedriveDeadRequest,
  shards: readonly string[],
): Promise<RedriveDeadResponse> {
  // the shard paces a redrive to its rate: its call lasts as long as its tasks take
  // at that rate, and gets the usual cap on top (as a long-poll Lease its wait); a
  // call over the shard's limits is refused at once, and waits for nothing
  const rate = req.ratePerSecond || DEFAULT_REDRIVE_RATE;
  const redriveTimeout = (max: number) =>
    Math.ceil((1000 * Math.min(req.taskIds.length || max, MAX_REDRIVE_TASKS)) / rate) +
    routing.config.shardTimeoutMs;
  return spreadDead(
    routing,
    shards,
    req.taskIds,
    req.maxTasks || 100,
    (c, max) =>
      c.queue
        .redriveDead({ ...req, maxTasks: max }, routing.options(f, redriveTimeout(max)))
        .then(({ value: r }) => ({
          done: r.redriven,
          remaining: r.remaining,
          notFound: r.notFound,
        })),
    deadLeft(routing, f, req.command),
  ).then((r) => ({ redriven: r.done, remaining: r.remaining, notFound: r.notFound }));
}

/** PurgeDead over the queue's `shards` (see `spreadDead`). */
export function purgeDead(
  routing: Routing,
  f: Forward,
  req: PurgeDeadRequest,
  shards: readonly string[],
): Promise<PurgeDeadResponse> {
  return spreadDead(
    routing,
    shards,
    req.taskIds,
    req.maxTasks || 1000,
    (c, max) =>
      c.queue.purgeDead({ ...req, maxTasks: max }, routing.options(f)).then(({ value: r }) => ({
        done: r.purged,
        remaining: r.remaining,
        notFound: r.notFound,
      })),
    deadLeft(routing, f, req.command),
  ).then((r) => ({ purged: r.done, remaining: r.remaining, notFound: r.notFound }));
}

/** How many dead tasks of `command` one shard holds (RedriveDead and PurgeDead's `remaining`). */
const deadLeft = (routing: Routing, f: Forward, command: string) => (c: ShardConn) =>
  c.queue.queueStats({ command }, routing.options(f)).then(({ value }) => value.total?.dead ?? 0);

/** What a RedriveDead or PurgeDead did, over one shard or all of them. */
interface DeadOutcome {
  done: number;
  remaining: number;
  notFound: string[];
}

/**
 * Redrive and purge over a queue's shards, one after another: named ids go to
 * every shard (an id is not found only if no shard has it); otherwise `max` is a
 * budget spent shard by shard. A shard that fails stops the call with what was
 * done so far in the message; both calls are safe to repeat.
 */
async function spreadDead(
  routing: Routing,
  shards: readonly string[],
  ids: readonly string[],
  max: number,
  call: (conn: ShardConn, max: number) => Promise<DeadOutcome>,
  deadLeft: (conn: ShardConn) => Promise<number>,
): Promise<DeadOutcome> {
  const total: DeadOutcome = { done: 0, remaining: 0, notFound: [] };
  let missing: Set<string> | undefined = ids.length > 0 ? new Set(ids) : undefined;
  for (const shard of shards) {
    const budget = ids.length > 0 ? max : max - total.done;
    if (budget <= 0 && ids.length === 0) {
      // the budget is spent: this shard's dead tasks are left, and `remaining` says so
      total.remaining += await routing.pool
        .get(shard)
        .call(deadLeft)
        // not known: one, so that a caller calling until none remain calls again, and
        // that call reaches this shard (or says why not)
        .catch(() => 1);
      continue;
    }
    let out: DeadOutcome;
    try {
      out = await routing.pool.get(shard).call((c) => call(c, budget));
    } catch (err) {
      const e = asServerError(err);
      if (CALLER_CODES.has(e.code) || total.done === 0) throw e;
      throw new ServerError(
        e.code,
        `${total.done} done before shard ${shard} failed (${e.details}); call again for the rest`,
      );
    }
    total.done += out.done;
    total.remaining += out.remaining;
    if (missing) missing = new Set(out.notFound.filter((id) => missing!.has(id)));
  }
  total.notFound = missing ? ids.filter((id) => missing!.has(id)) : [];
  return total;
}
