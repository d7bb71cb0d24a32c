import { Status, type CallContext } from "nice-grpc";
import { linkedSignal } from "@codeq/common";
import { LeasedTask } from "@codeq/proto";
import type { LeaseRequest, LeaseResponse } from "@codeq/proto";
import { fanOut, noneAnswered, throwCallerError, type FanOut } from "./fan-out";
import { tokensOf } from "./forward-lane";
import { elementBytes } from "./passthrough";
import { countField, passThrough, type Raw } from "./wire-bytes";
import type { Forward, Routing } from "./routing";
import type { ShardConn } from "./shard-pool";

/** The unary Lease on the router: a call over every shard of the queues it names. */
export class LeaseFanOut {
  /** Which shards get a task when a call asks for fewer than there are shards (`shares`). */
  private rotation = 0;

  constructor(
    private readonly routing: Routing,
    /** The router's drain: a long poll ends with it. */
    private readonly draining: AbortSignal,
  ) {}

  /** Leases up to `max` tasks (`req` checked by the caller) within the tenant's lease limit. */
  async lease(
    f: Forward,
    ctx: CallContext,
    req: LeaseRequest,
    max: number,
  ): Promise<LeaseResponse> {
    const routing = this.routing;
    const bucket = routing.limits.lease(ctx, f.identity.tenant, max);
    const shards = routing.leaseShards(req.commands, f.identity.tenant, req.allTenants);
    // every shard gets a share of max_tasks (with fewer tasks than shards, some get
    // none, in turn), so the first answers never hold more
    const split = shares(max, shards.length, this.rotation++);
    const share = (id: string) => split[shards.indexOf(id)]!;
    const round = (
      ids: readonly string[],
      n: (shard: string) => number,
      ask: LeaseRequest,
      firstWins: boolean,
    ) => leaseRound(routing, f, ids, n, ask, firstWins, this.draining);
    let got: Leased[] = [];
    let delivered = 0;
    /**
     * What the call holds of the tenant's lease rate, in `charged`: `max` until it
     * waits. A long poll holds nothing while it waits (idle pollers would leave the
     * tenant's other calls refused); when it answers, it takes what the bucket holds now,
     * up to `max`, and delivers no more than that (at least one task, which may leave
     * the bucket owing one): the rest of what it leased goes back to the shards.
     */
    let held = max;
    let charged = bucket;
    let waited = false;
    const waiting = async (poll: Promise<LeaseRound>) => {
      charged?.refund(held);
      held = 0;
      waited = true;
      const answered = await poll;
      // the tenant's bucket as it is now: the call's may have been dropped as full meanwhile
      charged = routing.limits.leaseBucket(f.identity.tenant);
      held = charged ? charged.takeUpTo(max) : max;
      return answered;
    };
    const now = req.waitMs > 0 ? { ...req, waitMs: 0 } : req;
    try {
      // one shard: what is ready now, then, if nothing was, a long poll; several: what
      // is ready now on the shards with a share, then on the others (they may hold what
      // those lack), then, if nothing was, a long poll on all, answered by the first
      // with tasks
      // (a draining router does not wait: its second round would not either)
      const mayWait = req.waitMs > 0 && !this.draining.aborted;
      if (shards.length === 1) {
        got = answeredOrThrow(await round(shards, share, now, false));
        if (got.length === 0 && mayWait)
          got = answeredOrThrow(await waiting(round(shards, share, req, false)));
      } else {
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
        if (got.length === 0 && mayWait)
          got = answeredOrThrow(
            await waiting(round(shards, (id) => Math.max(1, share(id)), req, true)),
          );
      }
      if (f.signal.aborted) {
        // the caller left (its deadline passed) while a slower shard was asked: what
        // the others leased goes back, as a shard gives back what its caller left
        for (const a of got) void routing.giveBack(a.conn, f, tokensOf(a.raw));
        return { tasks: [] };
      }
      const limit = waited ? Math.max(1, held) : max;
      if (got.length === 1) {
        const n = Math.max(0, countField(got[0]!.raw.bytes, 1));
        if (n <= limit) {
          delivered = n;
          return passThrough(got[0]!.raw);
        }
      }
      const tasks = mergeLeases(
        got,
        limit,
        routing.config.maxResponseBytes,
        (conn, tokens) => void routing.giveBack(conn, f, tokens),
      );
      delivered = tasks.length;
      return { tasks };
    } finally {
      // the limit counts tasks delivered, not asked for
      if (delivered <= held) charged?.refund(held - delivered);
      else charged?.charge(delivered - held);
    }
  }
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
 * the lease expires and the task is delivered again). Once one shard has answered,
 * the others have `fanoutTimeoutMs` more: a shard whose store stalls (alive, so its
 * breaker stays closed) would otherwise hold the tasks the others leased, their lease
 * time running, for its whole timeout. A shard cut off gives back what it leased for
 * the call, as for a caller that left.
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
  const several = shards.length > 1;
  const ends = [f.signal, ...(several ? [stop.signal] : []), ...(req.waitMs ? [draining] : [])];
  // not AbortSignal.any: it would leave an entry per call on the drain's signal
  const linked = ends.length === 1 ? undefined : linkedSignal(ends);
  const signal = linked?.signal ?? f.signal;
  const timeout = req.waitMs + routing.config.shardTimeoutMs;
  let grace: NodeJS.Timeout | undefined;
  const started = performance.now();
  const answered = () => {
    // in a long poll, only an answer after the whole wait: one sooner (a shard that
    // drains answers at once) says nothing of how long the others may wait
    if (!several || grace !== undefined || performance.now() - started < req.waitMs) return;
    grace = setTimeout(() => stop.abort(), routing.config.fanoutTimeoutMs);
  };
  const got: Leased[] = [];
  const { failed } = await fanOut(
    routing,
    shards,
    async (conn) => {
      const n = share(conn.id);
      // asked for what the caller asked: the request goes on as the caller's bytes
      const ask = n === req.maxTasks ? req : { ...req, maxTasks: n };
      const raw = await routing.lease(conn, { ...f, signal }, ask, timeout);
      answered();
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
  ).finally(() => {
    clearTimeout(grace);
    linked?.dispose();
  });
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
