import { Metadata, ServerError, Status, type CallContext } from "nice-grpc";
import { DEFAULT_REDRIVE_RATE, linkedSignal, MAX_REDRIVE_TASKS } from "@codeq/common";
import { leaseTokenShard, NAME_PATTERN } from "@codeq/engine";
import { LeasedTask, Task } from "@codeq/proto";
import type {
  AckItem,
  ExtendItem,
  NackItem,
  ExtendResult,
  ItemStatus,
  EnqueueBatchRequest,
  LeaseRequest,
  LeaseResponse,
  QueueServiceImplementation,
} from "@codeq/proto";
import { answerConcurrently, CALLER_CODES, requireRole, type Lifecycle } from "@codeq/server-kit";
import {
  ackProblem,
  extendProblem,
  failedEnqueueResults,
  MAX_RESPONSE_BYTES_HEADER,
  nackProblem,
} from "@codeq/wire";
import { checkBatchSize, enqueueBatch, MAX_BATCH } from "./enqueue";
import { asServerError, fanOut, noneAnswered, routerShuttingDown, type FanOut } from "./fan-out";
import { FanInSession } from "./fan-in";
import { tokensOf } from "./forward-lane";
import { elementBytes, streamAnswer } from "./passthrough";
import { countField, decoded, passThrough, type Raw } from "./wire-bytes";
import { addCounts, emptyQueueCounts } from "./queue-counts";
import type { FormerShards } from "./former-shards";
import type { Forward, Routing } from "./routing";
import type { ShardConn } from "./shard-pool";

const invalid = (message: string) => new ServerError(Status.INVALID_ARGUMENT, message);

/** Longest unary Lease wait, ms (the shard workers' maximum). */
const MAX_LEASE_WAIT_MS = 30_000;

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

/** Throws the first answer that is about the request itself (bad input, rights). */
function throwCallerError(failed: readonly { error: ServerError }[]): void {
  const own = failed.find((f) => CALLER_CODES.has(f.error.code));
  if (own) throw own.error;
}

/**
 * Settles items by the shard their lease token names, whatever the map says now:
 * split per shard, sent in parallel, answered in the caller's order. A token that
 * names no shard of the map is NOT_FOUND, like any unknown token.
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
        if (CALLER_CODES.has(e.code)) throw e;
        for (const i of idx) out[i] = status({ code: e.code, message: e.details });
      }
    }),
  );
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

/** Splits `max` over `n` shards, the first ones (drained first) taking the remainder. */
export function shares(max: number, n: number, rotation: number): number[] {
  const base = Math.floor(max / n);
  const extra = max % n;
  // with fewer tasks than shards, rotate which shards get one so none starves
  const turn = rotation % n;
  return Array.from({ length: n }, (_, i) =>
    base > 0 ? base + (i < extra ? 1 : 0) : (i - turn + n) % n < extra ? 1 : 0,
  );
}

/**
 * Where a ListDead listing stands: the shard it is in and that shard's cursor, and the
 * shards it has listed in full. Shards are named, not numbered: the queue's shards may
 * change between pages (a move starts, ends or is aborted), and a position in the list
 * would then skip a shard, or send one shard's cursor to another.
 */
interface DeadPageToken {
  /** The shard the listing is in ("" at the start). */
  readonly shard: string;
  readonly cursor: string;
  readonly done: readonly string[];
}

const DEAD_TOKEN_MAX_CHARS = 4096;

function decodeDeadToken(token: string, shards: readonly string[]): DeadPageToken {
  if (!token) return { shard: "", cursor: "", done: [] };
  const bad = () => invalid("page_token is not one this router issued; start again without it");
  if (token.length > DEAD_TOKEN_MAX_CHARS) throw bad();
  const text = Buffer.from(token, "base64url").toString("utf8");
  // a token of a router before shards were named: its shard by position
  const old = /^r1\.(\d{1,3})\.(.*)$/s.exec(text);
  if (old) {
    const at = Number(old[1]);
    return { shard: shards[at] ?? "", cursor: old[2]!, done: shards.slice(0, at) };
  }
  const named = /^r2\.(.*)$/s.exec(text);
  let t: unknown;
  try {
    t = named ? JSON.parse(named[1]!) : undefined;
  } catch {
    throw bad();
  }
  const o = t as Partial<Record<keyof DeadPageToken, unknown>> | undefined;
  if (
    typeof o?.shard !== "string" ||
    typeof o.cursor !== "string" ||
    !Array.isArray(o.done) ||
    !o.done.every((d) => typeof d === "string")
  )
    throw bad();
  return { shard: o.shard, cursor: o.cursor, done: o.done as string[] };
}

const encodeDeadToken = (t: DeadPageToken) =>
  Buffer.from(`r2.${JSON.stringify(t)}`, "utf8").toString("base64url");

/**
 * The shards a ListDead page goes through, in order: the one the token is in (if the
 * queue still has it), then the queue's shards it has not listed yet.
 */
function deadPageOrder(shards: readonly string[], t: DeadPageToken): string[] {
  const done = new Set(t.done);
  const rest = shards.filter((id) => id !== t.shard && !done.has(id));
  return shards.includes(t.shard) ? [t.shard, ...rest] : rest;
}

/** Codes of a request refused whole for its own sake: nothing of it was stored. */
const REFUSED: ReadonlySet<number> = new Set([...CALLER_CODES, Status.FAILED_PRECONDITION]);

/** codeq.v1.QueueService on the router: every call forwarded to the shards that own it. */
export function queueRouter(
  routing: Routing,
  lifecycle: Lifecycle,
  formerShards?: FormerShards,
): QueueServiceImplementation {
  let rotation = 0;
  const queueShards = (f: Forward, command: string) =>
    routing.leaseShards([command], f.identity.tenant, false);

  /**
   * Charges the tenant's enqueue rate limit for `n` tasks, runs `store`, and gives the
   * charge back when the request is refused as a whole for its own sake (bad input,
   * no right: nothing was stored), so a producer's bad batch does not lock its tenant
   * out. A failure that may have stored it (a deadline, a broken connection) stays
   * charged, as do items refused one by one in an answer.
   */
  const charged = <T>(
    f: Forward,
    ctx: CallContext | undefined,
    n: number,
    store: () => Promise<T>,
  ): Promise<T> => {
    const bucket = routing.limits.enqueue(ctx, f.identity.tenant, n);
    // without a limit, nothing to give back: no wrapper on the enqueue's path
    if (!bucket) return store();
    return store().catch((err: unknown) => {
      if (REFUSED.has(asServerError(err).code)) bucket.refund(n);
      throw err;
    });
  };

  const storeBatch = (f: Forward, req: EnqueueBatchRequest, ctx: CallContext | undefined) => {
    const n = checkBatchSize(req, routing); // refused for its size before it is charged
    return charged(f, ctx, n, () => enqueueBatch(routing, f, req));
  };

  /** How many dead tasks of `command` one shard holds (RedriveDead and PurgeDead's `remaining`). */
  const deadLeft = (f: Forward, command: string) => (c: ShardConn) =>
    c.queue.queueStats({ command }, routing.options(f)).then(({ value }) => value.total?.dead ?? 0);

  return {
    async enqueue(req, ctx) {
      const f = await routing.forward(ctx);
      const answer = await charged(f, ctx, 1, () =>
        routing.fenced(
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
      const f = await routing.forward(ctx);
      yield* answerConcurrently(
        requests,
        async (req) => streamAnswer(req.seq, await storeBatch(f, { tasks: req.tasks }, undefined)),
        (req, err) => {
          const e = asServerError(err);
          const status = { code: e.code, message: e.details };
          return { seq: req.seq, results: failedEnqueueResults(req.tasks.length, status) };
        },
        // at shutdown: what was read is stored and answered; nothing more is read
        { stopReading: { signal: lifecycle.signal, error: routerShuttingDown } },
      );
    },

    async lease(req, ctx) {
      const f = await routing.forward(ctx);
      if (req.commands.length === 0) throw invalid("commands: at least one command is required");
      const max = req.maxTasks || 1;
      if (max > MAX_BATCH) throw invalid(`max_tasks must be at most ${MAX_BATCH}, got ${max}`);
      // checked here too: the router's own deadline is built on it
      if (req.waitMs > MAX_LEASE_WAIT_MS)
        throw invalid(`wait_ms must be at most ${MAX_LEASE_WAIT_MS}, got ${req.waitMs}`);
      const bucket = routing.limits.lease(ctx, f.identity.tenant, max);
      const shards = routing.leaseShards(req.commands, f.identity.tenant, req.allTenants);
      // every shard gets a share of max_tasks (with fewer tasks than shards, some get
      // none, in turn), so the first answers never hold more
      const split = shares(max, shards.length, rotation++);
      const share = (id: string) => split[shards.indexOf(id)]!;
      const round = (
        ids: readonly string[],
        n: (shard: string) => number,
        ask: LeaseRequest,
        firstWins: boolean,
      ) => leaseRound(routing, f, ids, n, ask, firstWins, lifecycle.signal);
      let got: Leased[] = [];
      let delivered = 0;
      try {
        // one shard: one call with the caller's wait; several: what is ready now on
        // the shards with a share, then on the others (they may hold what those lack),
        // then, if nothing was, a long poll on all, answered by the first with tasks
        if (shards.length === 1) got = answeredOrThrow(await round(shards, share, req, false));
        else {
          const now = { ...req, waitMs: 0 };
          const asked = shards.filter((id) => share(id) > 0);
          const first = await round(asked, share, now, false);
          got = first.got;
          // the shards given no share may hold what the others lack, also when every
          // shard given one failed (a move's source that is down)
          const unasked = shards.filter((id) => share(id) === 0);
          const second =
            got.length === 0 && unasked.length > 0
              ? await round(unasked, () => max, now, false)
              : undefined;
          if (second) got = second.got;
          // no shard answered at all: the long poll would only fail again
          if (
            got.length === 0 &&
            first.failed.length + (second?.failed.length ?? 0) === shards.length
          )
            throw noneAnswered([...first.failed, ...(second?.failed ?? [])]);
          if (got.length === 0 && req.waitMs > 0)
            got = answeredOrThrow(await round(shards, (id) => Math.max(1, share(id)), req, true));
        }
        if (f.signal.aborted) {
          // the caller left (its deadline passed) while a slower shard was asked: what
          // the others leased goes back, as a shard gives back what its caller left
          for (const a of got) void routing.giveBack(a.conn, f, tokensOf(a.raw));
          return { tasks: [] };
        }
        if (got.length === 1) {
          delivered = Math.max(0, countField(got[0]!.raw.bytes, 1));
          return passThrough(got[0]!.raw);
        }
        const tasks = mergeLeases(
          got,
          max,
          routing.config.maxResponseBytes,
          (conn, tokens) => void routing.giveBack(conn, f, tokens),
        );
        delivered = tasks.length;
        return { tasks };
      } finally {
        bucket?.refund(max - delivered); // the limit counts tasks delivered, not asked for
      }
    },

    async *leaseStream(requests, ctx) {
      const f = await routing.forward(ctx);
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
      const ask = (shards: string[]) =>
        fanOut(routing, shards, (c, deadline) =>
          c.queue.getTask(req, { ...routing.options(f), deadline }),
        );
      const shards = queueShards(f, req.command);
      const { answers, failed } = await ask(shards);
      /** NOT_FOUND is an answer; a shard that failed otherwise may hold the task. */
      const unanswered = (round: typeof failed) => {
        const real = round.filter((x) => x.error.code !== Status.NOT_FOUND);
        throwCallerError(real);
        if (real.length > 0)
          throw new ServerError(
            Status.UNAVAILABLE,
            `task ${req.taskId} not found on the shards that answered; ${real.map((x) => x.shard).join(", ")} did not answer: ${real[0]!.error.details}`,
          );
      };
      const found = answers.find((a) => a.value.value.task);
      if (found) return passThrough(found.value);
      unanswered(failed);
      // a queue that moved left its completed tasks on the shard it moved from until
      // retention removes them (and a dedup answer names them): asked last, as the
      // queue's own shards do not hold the task; only the shards its finished moves
      // involved, when the history is known
      const former = await formerShards?.of(req.command, f.identity.tenant, false);
      const others = routing.pool
        .all()
        .map((c) => c.id)
        .filter((id) => !shards.includes(id) && (former === undefined || former.includes(id)));
      const left = others.length > 0 ? await ask(others) : undefined;
      const behind = left?.answers.find((a) => a.value.value.task);
      if (behind) return passThrough(behind.value);
      // (a shard the queue was on: one that is not, asked only because the history is
      // unknown, does not make every miss unavailable while it is down)
      if (left && former !== undefined) unanswered(left.failed);
      throw new ServerError(
        Status.NOT_FOUND,
        failed[0]?.error.details ?? `no task ${req.taskId} in ${req.command} for this tenant`,
      );
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
      const token = decodeDeadToken(req.pageToken, shards);
      const order = deadPageOrder(shards, token);
      const done = [...token.done];
      // the token's cursor is its shard's; the others start at their beginning
      let cursor = order[0] === token.shard ? token.cursor : "";
      const tasks: Task[] = [];
      const unavailableShards: string[] = [];
      // each shard bounds its page's bytes; past the first task, a shard may add only
      // what still fits in one answer (MAX_RESPONSE_BYTES_HEADER)
      let bytes = 0;
      let at = 0;
      while (at < order.length && tasks.length < size) {
        const id = order[at]!;
        const asked = size - tasks.length;
        const options = routing.options(f);
        if (tasks.length > 0) {
          const left = Math.max(0, routing.config.maxResponseBytes - bytes);
          options.metadata = Metadata(options.metadata).set(MAX_RESPONSE_BYTES_HEADER, `${left}`);
        }
        try {
          const page = await routing.pool
            .get(id)
            .call((c) => c.queue.listDead({ ...req, pageSize: asked, pageToken: cursor }, options));
          tasks.push(...page.value.tasks);
          for (const task of page.value.tasks) bytes += elementBytes(Task, task);
          if (page.value.nextPageToken) {
            cursor = page.value.nextPageToken;
            // fewer than asked, and more to come: the page is full by bytes
            if (page.value.tasks.length < asked) break;
            continue;
          }
        } catch (err) {
          const e = asServerError(err);
          if (CALLER_CODES.has(e.code)) throw e;
          unavailableShards.push(id);
        }
        done.push(id);
        at++;
        cursor = "";
      }
      const nextPageToken =
        at < order.length ? encodeDeadToken({ shard: order[at]!, cursor, done }) : "";
      return { tasks, nextPageToken, unavailableShards };
    },

    async redriveDead(req, ctx) {
      const f = await routing.forward(ctx);
      // the shard paces a redrive to its rate: its call lasts as long as its tasks take
      // at that rate, and gets the usual cap on top (as a long-poll Lease its wait); a
      // call over the shard's limits is refused at once, and waits for nothing
      const rate = req.ratePerSecond || DEFAULT_REDRIVE_RATE;
      const redriveTimeout = (max: number) =>
        Math.ceil((1000 * Math.min(req.taskIds.length || max, MAX_REDRIVE_TASKS)) / rate) +
        routing.config.shardTimeoutMs;
      return spreadDead(
        routing,
        queueShards(f, req.command),
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
        deadLeft(f, req.command),
      ).then((r) => ({ redriven: r.done, remaining: r.remaining, notFound: r.notFound }));
    },

    async purgeDead(req, ctx) {
      const f = await routing.forward(ctx);
      return spreadDead(
        routing,
        queueShards(f, req.command),
        req.taskIds,
        req.maxTasks || 1000,
        (c, max) =>
          c.queue.purgeDead({ ...req, maxTasks: max }, routing.options(f)).then(({ value: r }) => ({
            done: r.purged,
            remaining: r.remaining,
            notFound: r.notFound,
          })),
        deadLeft(f, req.command),
      ).then((r) => ({ purged: r.done, remaining: r.remaining, notFound: r.notFound }));
    },
  };
}

/** One shard's answer to a Lease. */
export interface Leased {
  readonly conn: ShardConn;
  readonly raw: Raw<LeaseResponse>;
}

/**
 * The tasks of several shards' Lease answers, at most `maxTasks` and within `maxBytes`
 * (the first task whatever its size). Each shard keeps its own answer within its
 * bounds, but answers merged may pass what the caller asked for or accepts (shards
 * asked for more than their share when some had none); what does not fit is given
 * back to its shard, as for a caller that left: ready at once, its attempt not
 * counted. Every shard's first task comes before any shard's second, so a large task
 * at the head of one shard is not given back time after time because another shard
 * answered first.
 */
export function mergeLeases(
  answers: readonly Leased[],
  maxTasks: number,
  maxBytes: number,
  giveBack: (conn: ShardConn, tokens: string[]) => void,
): LeasedTask[] {
  const count = answers.reduce((n, a) => n + countField(a.raw.bytes, 1), 0);
  if (count <= maxTasks && answers.reduce((n, a) => n + a.raw.bytes.length, 0) <= maxBytes)
    return answers.flatMap((a) => a.raw.value.tasks);
  const tasks = answers.map((a) => a.raw.value.tasks);
  const heads = answers.flatMap((a, i) =>
    tasks[i]!.length > 0 ? [{ a, task: tasks[i]![0]! }] : [],
  );
  const rest = answers.flatMap((a, i) => tasks[i]!.slice(1).map((task) => ({ a, task })));
  const out: LeasedTask[] = [];
  const back = new Map<ShardConn, string[]>();
  let bytes = 0;
  for (const { a, task } of [...heads, ...rest]) {
    const size = elementBytes(LeasedTask, task);
    if (out.length >= maxTasks || (out.length > 0 && bytes + size > maxBytes)) {
      const tokens = back.get(a.conn) ?? [];
      tokens.push(task.leaseToken);
      back.set(a.conn, tokens);
    } else {
      out.push(task);
      bytes += size;
    }
  }
  for (const [conn, tokens] of back) giveBack(conn, tokens);
  return out;
}

/** What one `leaseRound` got, and the shards that failed it (the caller's own errors are thrown). */
interface LeaseRound {
  readonly got: Leased[];
  readonly failed: FanOut<unknown>["failed"];
  /** Every shard of the round failed. */
  readonly all?: boolean;
}

/**
 * One lease call to each shard, in parallel. With `firstWins`, the first shard that
 * returns tasks cancels the others' waits (a shard that leased at the very moment
 * of the cancel releases what it took, or, if its answer was already on the wire,
 * the lease expires and the task is delivered again).
 */
async function leaseRound(
  routing: Routing,
  f: Forward,
  shards: readonly string[],
  share: (shard: string) => number,
  req: LeaseRequest,
  firstWins: boolean,
  draining: AbortSignal,
): Promise<LeaseRound> {
  const stop = new AbortController();
  // a long poll ends with this router's drain, as on a shard worker: answered with
  // what it has (the shards give back what they leased for a call that left); one
  // that comes once the drain has begun only takes what is ready
  if (req.waitMs > 0 && draining.aborted) req = { ...req, waitMs: 0 };
  const ends = [f.signal, ...(firstWins ? [stop.signal] : []), ...(req.waitMs ? [draining] : [])];
  // not AbortSignal.any: it would leave an entry per call on the drain's signal
  const linked = ends.length === 1 ? undefined : linkedSignal(ends);
  const signal = linked?.signal ?? f.signal;
  const timeout = req.waitMs + routing.config.shardTimeoutMs;
  const got: Leased[] = [];
  const { failed } = await fanOut(
    routing,
    shards,
    async (conn) => {
      const n = share(conn.id);
      // asked for what the caller asked: the request goes on as the caller's bytes
      const ask = n === req.maxTasks ? req : { ...req, maxTasks: n };
      const raw = await routing.lease(conn, { ...f, signal }, ask, timeout);
      if (countField(raw.bytes, 1) !== 0) {
        got.push({ conn, raw });
        if (firstWins) stop.abort();
      }
      return raw;
    },
    timeout,
    // not a read: a lease whose answer was lost may have leased (and a long poll
    // would wait its whole time again); the caller decides
    false,
  ).finally(() => linked?.dispose());
  if (got.length > 0) return { got, failed: [] };
  const ended = stop.signal.aborted || (req.waitMs > 0 && draining.aborted);
  const real = failed.filter((x) => !(ended && x.error.code === Status.CANCELLED));
  throwCallerError(real);
  return { got, failed: real, all: real.length === shards.length && real.length > 0 };
}

/** A round's tasks; when every shard of it failed, the failure (`noneAnswered`). */
function answeredOrThrow(round: LeaseRound): Leased[] {
  if (round.all) throw noneAnswered(round.failed);
  return round.got;
}

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
