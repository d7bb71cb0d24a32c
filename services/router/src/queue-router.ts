import { ServerError, Status, type CallContext } from "nice-grpc";
import { leaseTokenShard, NAME_PATTERN } from "@codeq/engine";
import type {
  AckItem,
  ExtendItem,
  NackItem,
  ExtendResult,
  ItemStatus,
  EnqueueBatchRequest,
  QueueServiceImplementation,
} from "@codeq/proto";
import { answerConcurrently, CALLER_CODES, requireRole, type Lifecycle } from "@codeq/server-kit";
import { ackProblem, extendProblem, failedEnqueueResults, nackProblem } from "@codeq/wire";
import { listDeadPage } from "./dead-pages";
import { purgeDead, redriveDead } from "./dead-spread";
import { checkBatchSize, enqueueBatch, MAX_BATCH } from "./enqueue";
import { chargeEnqueue } from "./enqueue-charge";
import { asServerError, fanOut, noneAnswered, throwCallerError } from "./fan-out";
import { streamStop } from "./credential-expiry";
import { FanInSession } from "./fan-in";
import { findTask } from "./find-task";
import { LeaseFanOut } from "./lease-fan-out";
import { streamAnswer } from "./passthrough";
import { passThrough, type Raw } from "./wire-bytes";
import { addCounts, emptyQueueCounts } from "./queue-counts";
import type { FormerShards } from "./former-shards";
import type { Forward, Routing } from "./routing";
import { MAX_LEASE_WAIT_MS, type ShardConn } from "./shard-pool";

const invalid = (message: string) => new ServerError(Status.INVALID_ARGUMENT, message);

function checkCommand(command: string): void {
  if (!NAME_PATTERN.test(command))
    throw invalid(
      `command must match ${NAME_PATTERN.source} (letters, digits, '_', '.', '-'; 1 to 128)`,
    );
}

function checkItems(n: number): void {
  if (n < 1) throw invalid("items: at least one item is required");
  if (n > MAX_BATCH) throw invalid(`items: at most ${MAX_BATCH} items per call, got ${n}`);
}

/**
 * Settles items by the shard their lease token names, whatever the map says now:
 * split per shard, sent in parallel, answered in the caller's order. A token that
 * names no shard of the map is NOT_FOUND, like any unknown token. A shard that
 * refuses its part for the caller's sake (its rights, a part too large) answers that
 * as its items' status; the call fails with it only when every item was so refused,
 * as on one shard (otherwise the caller would take parts other shards applied for
 * not applied).
 */
export async function settleByToken<I extends { leaseToken: string }, R>(
  routing: Routing,
  items: readonly I[],
  send: (conn: ShardConn, items: I[]) => Promise<R[]>,
  status: (s: ItemStatus) => R,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  const byShard = new Map<string, number[]>();
  items.forEach((item, i) => {
    const shard = leaseTokenShard(item.leaseToken);
    if (shard === undefined || !routing.pool.has(shard)) {
      out[i] = status({
        code: Status.NOT_FOUND,
        message: "no such lease: unknown token, or the task no longer exists",
      });
      return;
    }
    let list = byShard.get(shard);
    if (!list) byShard.set(shard, (list = []));
    list.push(i);
  });
  let refused: { error: ServerError; items: number } | undefined;
  await Promise.all(
    [...byShard].map(async ([shard, idx]) => {
      try {
        const conn = routing.pool.get(shard);
        const res = await conn.call((c) =>
          send(
            c,
            idx.map((i) => items[i]!),
          ),
        );
        idx.forEach((i, j) => (out[i] = res[j]!));
      } catch (err) {
        const e = asServerError(err);
        if (CALLER_CODES.has(e.code))
          refused = { error: refused?.error ?? e, items: (refused?.items ?? 0) + idx.length };
        for (const i of idx) out[i] = status({ code: e.code, message: e.details });
      }
    }),
  );
  if (refused && refused.items === items.length) throw refused.error;
  return out;
}

/**
 * A call answered as the shard's bytes; a failure of the shard (not of the request)
 * becomes the status of every item, as it would for a batch split across shards.
 */
async function whole<T>(
  call: () => Promise<Raw<T>>,
  allFailed: (status: ItemStatus) => T,
): Promise<T> {
  try {
    return passThrough(await call());
  } catch (err) {
    const e = asServerError(err);
    if (CALLER_CODES.has(e.code) || e.code === Status.CANCELLED) throw e;
    return allFailed({ code: e.code, message: e.details });
  }
}

/** The one shard every token names, when they all name the same known shard. */
function soleShard(
  routing: Routing,
  items: readonly { leaseToken: string }[],
): ShardConn | undefined {
  const shard = leaseTokenShard(items[0]!.leaseToken);
  if (shard === undefined || !routing.pool.has(shard)) return undefined;
  for (const item of items) if (leaseTokenShard(item.leaseToken) !== shard) return undefined;
  return routing.pool.get(shard);
}

const extendStatus = (status: ItemStatus): ExtendResult => ({ status, leaseDeadlineMs: 0 });

/** Another way to a shard (a lease stream's own shard stream), or undefined to call it. */
type Via<I, R> = (conn: ShardConn, items: I[]) => Promise<R[]> | undefined;

/** Ack, Nack and Extend through the router (unary calls, and client streams). */
export function settlers(routing: Routing, f: Forward) {
  const route =
    <I extends { leaseToken: string }, R>(
      call: (c: ShardConn, items: I[]) => Promise<R[]>,
      status: (s: ItemStatus) => R,
    ) =>
    (items: readonly I[], via?: Via<I, R>) =>
      settleByToken(routing, items, (c, part) => via?.(c, part) ?? call(c, part), status);
  const same = (s: ItemStatus) => s;
  return {
    ack: route(
      (c, items: AckItem[]) => routing.ack(c, f, { items }).then((r) => r.value.results),
      same,
    ),
    nack: route(
      (c, items: NackItem[]) => routing.nack(c, f, { items }).then((r) => r.value.results),
      same,
    ),
    extend: route(
      (c, items: ExtendItem[]) => routing.extend(c, f, { items }).then((r) => r.value.results),
      extendStatus,
    ),
  };
}

/** codeq.v1.QueueService on the router: every call forwarded to the shards that own it. */
export function queueRouter(
  routing: Routing,
  lifecycle: Lifecycle,
  formerShards?: FormerShards,
): QueueServiceImplementation {
  const leases = new LeaseFanOut(routing, lifecycle.signal);
  const queueShards = (f: Forward, command: string) =>
    routing.leaseShards([command], f.identity.tenant, false);

  const storeBatch = (f: Forward, req: EnqueueBatchRequest, ctx: CallContext | undefined) => {
    const n = checkBatchSize(req, routing); // refused for its size before it is charged
    return chargeEnqueue(routing, f, ctx, n, (unstored) => enqueueBatch(routing, f, req, unstored));
  };

  return {
    async enqueue(req, ctx) {
      const f = await routing.forward(ctx);
      const answer = await chargeEnqueue(routing, f, ctx, 1, () =>
        routing.fenced(
          f,
          () => routing.currentShard(req.command, f.identity.tenant),
          (conn, onTrailer) => routing.storeOne(conn, f, req, onTrailer),
        ),
      );
      return passThrough(answer);
    },

    async enqueueBatch(req, ctx) {
      const f = await routing.forward(ctx);
      return storeBatch(f, req, ctx);
    },

    async *enqueueStream(requests, ctx) {
      const f = await routing.forward(ctx, true);
      // at shutdown, or once the caller's credential is no longer accepted: what was read
      // is stored and answered; nothing more is read
      const stop = streamStop(f, routing.config.streamCredentialRecheckMs, lifecycle.signal);
      try {
        yield* answerConcurrently(
          requests,
          async (req) =>
            streamAnswer(req.seq, await storeBatch(f, { tasks: req.tasks }, undefined)),
          (req, err) => {
            const e = asServerError(err);
            const status = { code: e.code, message: e.details };
            return { seq: req.seq, results: failedEnqueueResults(req.tasks.length, status) };
          },
          { stopReading: stop },
        );
      } finally {
        stop.close();
      }
    },

    async lease(req, ctx) {
      const f = await routing.forward(ctx);
      if (req.commands.length === 0) throw invalid("commands: at least one command is required");
      const max = req.maxTasks || 1;
      if (max > MAX_BATCH) throw invalid(`max_tasks must be at most ${MAX_BATCH}, got ${max}`);
      // checked here too: the router's own deadline is built on it
      if (req.waitMs > MAX_LEASE_WAIT_MS)
        throw invalid(`wait_ms must be at most ${MAX_LEASE_WAIT_MS}, got ${req.waitMs}`);
      return leases.lease(f, ctx, req, max);
    },

    async *leaseStream(requests, ctx) {
      const f = await routing.forward(ctx, true);
      const release = routing.limits.openStream(f.identity.tenant, f.identity.principal);
      try {
        // a message that only acks may be StreamAcks here (routerQueueService)
        yield* new FanInSession(routing, f, lifecycle.signal).run(requests);
      } finally {
        release();
      }
    },

    async ack(req, ctx) {
      const f = await routing.forward(ctx);
      checkItems(req.items.length);
      const problem = ackProblem(req.items);
      if (problem) throw invalid(problem);
      const one = soleShard(routing, req.items);
      if (one)
        return whole(
          () => one.call((c) => routing.ack(c, f, req)),
          (status) => ({ results: req.items.map(() => ((s) => s)(status)) }),
        );
      return { results: await settlers(routing, f).ack(req.items) };
    },

    async nack(req, ctx) {
      const f = await routing.forward(ctx);
      checkItems(req.items.length);
      const problem = nackProblem(req.items);
      if (problem) throw invalid(problem);
      const one = soleShard(routing, req.items);
      if (one)
        return whole(
          () => one.call((c) => routing.nack(c, f, req)),
          (status) => ({ results: req.items.map(() => ((s) => s)(status)) }),
        );
      return { results: await settlers(routing, f).nack(req.items) };
    },

    async extend(req, ctx) {
      const f = await routing.forward(ctx);
      checkItems(req.items.length);
      const problem = extendProblem(req.items);
      if (problem) throw invalid(problem);
      const one = soleShard(routing, req.items);
      if (one)
        return whole(
          () => one.call((c) => routing.extend(c, f, req)),
          (status) => ({ results: req.items.map(() => extendStatus(status)) }),
        );
      return { results: await settlers(routing, f).extend(req.items) };
    },

    async getTask(req, ctx) {
      const f = await routing.forward(ctx);
      return findTask(routing, f, req, queueShards(f, req.command), formerShards);
    },

    async queueStats(req, ctx) {
      const f = await routing.forward(ctx);
      const { answers, failed } = await fanOut(
        routing,
        queueShards(f, req.command),
        (c, deadline) => c.queue.queueStats(req, { ...routing.options(f), deadline }),
      );
      throwCallerError(failed);
      if (answers.length === 0) throw noneAnswered(failed);
      const total = emptyQueueCounts();
      const shards = answers.flatMap((a) => a.value.value.shards);
      for (const s of shards) addCounts(total, s.counts);
      return { total, shards, unavailableShards: failed.map((x) => x.shard) };
    },

    async listDead(req, ctx) {
      const f = await routing.forward(ctx);
      // answered here before any shard is asked (a page token may skip them all)
      requireRole(f.identity, "admin", "ListDead");
      checkCommand(req.command);
      const size = req.pageSize || 100;
      if (size > 1000) throw invalid(`page_size must be at most 1000, got ${req.pageSize}`);
      const shards = queueShards(f, req.command);
      return listDeadPage(routing, f, req, shards, size);
    },

    async redriveDead(req, ctx) {
      const f = await routing.forward(ctx);
      return redriveDead(routing, f, req, queueShards(f, req.command));
    },

    async purgeDead(req, ctx) {
      const f = await routing.forward(ctx);
      return purgeDead(routing, f, req, queueShards(f, req.command));
    },
  };
}
