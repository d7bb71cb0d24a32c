import type { EngineContext } from "./engine-context";
import { EngineError } from "./errors";
import { parseQueueId, queueId, type QueueRef } from "./keys";
import { buildRecord, type TaskSpec } from "./task-spec";
import {
  encodeRecord,
  nonceText,
  sameState,
  STATE_OF_LETTER,
  STATE_WIDTH,
  timeText,
  writeState,
} from "./task-record";
import { ID_WIDTH } from "./task-id";
import { encodeLeaseToken } from "./lease-token";
import type { StoredTask, TaskState } from "./task-record";
import type { GiveBackReason } from "./give-back";
import { fitting, fixedDeliveryBytes } from "./lease-size";

export interface EnqueueOutcome {
  readonly id: string;
  /** True when the idempotency key was live: `id` and `state` are the original's. */
  readonly duplicate: boolean;
  /** READY or SCHEDULED for a new task; the original's state for a duplicate (undefined once it is gone). */
  readonly state: TaskState | undefined;
}

/** One delivery: the task and the token that proves it. */
export interface Delivery {
  readonly task: StoredTask;
  readonly token: string;
  readonly deadline: number;
}

/** Validates every spec first (all or nothing), then stores the batch in one script call. */
export async function enqueue(
  ctx: EngineContext,
  queue: QueueRef,
  specs: readonly TaskSpec[],
): Promise<EnqueueOutcome[]> {
  return (await store(ctx, queue, specs)).outcomes;
}

/** What `enqueueAndLease` did: the enqueue's outcomes and what it then leased. */
export interface EnqueuedAndLeased {
  readonly outcomes: EnqueueOutcome[];
  readonly deliveries: Delivery[];
  /**
   * Ids still in the queue's ready lists after the lease: an upper bound on the tasks
   * still ready, so 0 means none is.
   */
  readonly readyLeft: number;
}

/**
 * Stores the batch as `enqueue` does, then leases up to `options.max` ready tasks of
 * the queue (priority order, as `lease`), in one script call: the shard worker hands a
 * fresh batch to a waiting stream without a second round trip.
 */
export function enqueueAndLease(
  ctx: EngineContext,
  queue: QueueRef,
  specs: readonly TaskSpec[],
  options: LeaseOptions,
): Promise<EnqueuedAndLeased> {
  checkLeaseOptions(options);
  return store(ctx, queue, specs, options);
}

async function store(
  ctx: EngineContext,
  queue: QueueRef,
  specs: readonly TaskSpec[],
  leasingOptions?: LeaseOptions,
): Promise<EnqueuedAndLeased> {
  if (specs.length === 0) return { outcomes: [], deliveries: [], readyLeft: 0 };
  const now = ctx.clock.now();
  const k = ctx.keys(queue);
  const records = specs.map((spec, i) =>
    buildRecord(spec, ctx.ids.next(now), now, ctx.limits, specs.length > 1 ? i : "task"),
  );
  const keys = [k.tasks, k.state, k.payloads, k.scheduled, k.idemidx, k.due, k.queues, ...k.ready];
  // enqueue-lease-19.lua: the lease's two keys come before the idempotency keys
  if (leasingOptions) keys.push(k.leased, k.dead);
  // ids and states are fixed-width: one packed argument (see enqueue-17.lua), written
  // in place rather than built from a string per field
  const packed = Buffer.allocUnsafe(records.length * PACKED_WIDTH);
  const payloads: Array<Uint8Array | string> = [];
  const recordArgs: Array<string | number> = [];
  const idem: Array<string | number> = [];
  const idemIndex = new Map<string, number>();
  records.forEach((record, i) => {
    const at = i * PACKED_WIDTH;
    packed.write(record.id, at, "latin1");
    const state = at + ID_WIDTH;
    const before = records[i - 1];
    if (before && sameState(before, record))
      packed.copy(packed, state, state - PACKED_WIDTH, state - PACKED_WIDTH + STATE_WIDTH);
    else writeState(packed, state, record);
    payloads.push(specs[i]!.payload ?? "");
    const json = encodeRecord(record, ctx.limits.defaultBackoff);
    if (json) recordArgs.push(i + 1, json);
    if (record.idemKey !== undefined) {
      let index = idemIndex.get(record.idemKey);
      if (index === undefined) {
        keys.push(k.idem(record.idemKey));
        index = keys.length;
        idemIndex.set(record.idemKey, index);
      }
      idem.push(i + 1, index, record.idemKey);
    }
  });
  const args: Array<string | number | Uint8Array> = [
    now,
    queueId(queue),
    ctx.idempotencyWindowMs,
    specs.length,
    packed,
    ...payloads,
    recordArgs.length / 2,
    ...recordArgs,
    idem.length / 3,
    ...idem,
  ];
  let reply: Array<string | number | Buffer>;
  let deliveries: Delivery[] = [];
  let readyLeft = 0;
  if (leasingOptions) {
    // { left, k, the enqueue's reply (k values), the lease's reply } (see enqueue-lease-19.lua)
    const lease = leaseArgs(ctx, queue, leasingOptions, now);
    const got = await leasing(ctx, queue, lease.call, async () => {
      const both = await ctx.runner.runBuffer<Array<number | Buffer>>("enqueue-lease", keys, [
        ...args,
        ...lease.args,
      ]);
      const enqueued = Number(both[1]);
      return {
        both,
        enqueued,
        deliveries: leasedFrom(ctx, queue, both.slice(2 + enqueued) as Buffer[]),
      };
    });
    reply = got.both.slice(2, 2 + got.enqueued);
    ({ deliveries } = await withinBytes(ctx, queue, lease.call, got.deliveries, leasingOptions));
    // what did not fit is ready again
    readyLeft = Number(got.both[0]) + got.deliveries.length - deliveries.length;
  } else {
    reply = await ctx.runner.run<Array<string | number>>("enqueue", keys, args);
  }
  const codes = String(reply[0]);
  const originals = new Map<number, { id: string; letter: string }>();
  for (let j = 1; j < reply.length; j += 3) {
    originals.set(Number(reply[j]), { id: String(reply[j + 1]), letter: String(reply[j + 2]) });
  }
  // Code 5 (a task with this id exists, nothing written) is reported as stored. Ids
  // are 48 bits of time and 80 random ones, incremented within a millisecond, so two
  // never collide in practice; what does happen is ioredis re-sending a script whose
  // reply a reconnect lost, and then the task that exists is the one this call stored.
  // Storing it again under a fresh id would make a replay a duplicate. For the same
  // reason, an idempotency key bound to one of this call's own task ids was bound by
  // this call's first run: the answer is the one that run would have given.
  let own: Map<string, TaskState> | undefined;
  const outcomes: EnqueueOutcome[] = records.map((record, i) => {
    if (codes[i] !== "1") return { id: record.id, duplicate: false, state: record.state };
    const original = originals.get(i + 1)!;
    if (original.id === record.id) return { id: record.id, duplicate: false, state: record.state };
    own ??= new Map(records.map((r) => [r.id, r.state]));
    const ownState = own.get(original.id);
    if (ownState) return { id: original.id, duplicate: true, state: ownState };
    return { id: original.id, duplicate: true, state: STATE_OF_LETTER[original.letter] };
  });
  return { outcomes, deliveries, readyLeft };
}

/** A task's id and the fixed part of its state, as the scripts pack them. */
const PACKED_WIDTH = ID_WIDTH + STATE_WIDTH;

/** The most tasks one engine call stores (an enqueue batch) or delivers (a lease). */
export const MAX_BATCH = 1000;

export interface LeaseOptions {
  /** 1..MAX_BATCH. */
  readonly max: number;
  /** Lease duration, ms: 1000..43200000. */
  readonly leaseMs: number;
  /**
   * The deliveries' size (`deliveryBytes`, summed) at most this. The store stops at the
   * bound (it reads no more payloads than that, one task more at most) and leaves the
   * rest ready, in order; what still passes it as counted here is given back at once,
   * ready again at the head of its list with its attempt not counted. Unbounded when
   * absent.
   */
  readonly maxBytes?: number;
  /** Keep the first delivery even when it alone is over `maxBytes`. Default true. */
  readonly firstAlways?: boolean;
}

/**
 * The deliveries of one lease call that fit in `options.maxBytes`, and their bytes
 * (`deliveryBytes`, summed; 0 when there is no bound); the rest are given back before
 * the answer (LeaseGiveBacks tries again if that fails). The lease script stops at the
 * bound itself, counting each delivery at least as this does, so this seldom gives
 * anything back.
 */
async function withinBytes(
  ctx: EngineContext,
  queue: QueueRef,
  call: LeaseCall,
  deliveries: Delivery[],
  options: LeaseOptions,
): Promise<{ deliveries: Delivery[]; bytes: number }> {
  if (options.maxBytes === undefined || deliveries.length === 0) return { deliveries, bytes: 0 };
  const { n, kept } = fitting(deliveries, options);
  if (n === deliveries.length) return { deliveries, bytes: kept };
  const fit = deliveries.slice(0, n);
  await undo(
    ctx,
    queue,
    call,
    fit.map((d) => d.task.id),
    "over size",
    deliveries,
  );
  return { deliveries: fit, bytes: kept };
}

export function checkLeaseMs(leaseMs: number): void {
  if (!Number.isInteger(leaseMs) || leaseMs < 1000 || leaseMs > 43_200_000) {
    throw new EngineError(
      "INVALID_ARGUMENT",
      `lease duration must be 1000..43200000 ms, got ${leaseMs}`,
    );
  }
}

function checkLeaseOptions(options: LeaseOptions): void {
  if (!Number.isInteger(options.max) || options.max < 1 || options.max > MAX_BATCH) {
    throw new EngineError(
      "INVALID_ARGUMENT",
      `max tasks must be 1..${MAX_BATCH}, got ${options.max}`,
    );
  }
  if (options.maxBytes !== undefined && !(options.maxBytes >= 0))
    throw new EngineError("INVALID_ARGUMENT", `max bytes must be >= 0, got ${options.maxBytes}`);
  checkLeaseMs(options.leaseMs);
}

/** What a lease call writes into every task it delivers, besides the lease sequence. */
interface LeaseCall {
  /** This call's nonce (14 digits). */
  readonly nonce: string;
  /** Its lease deadline (ms, 13 digits). */
  readonly deadline: string;
}

/** lease-17.lua's arguments, and the call they make. */
function leaseArgs(ctx: EngineContext, queue: QueueRef, options: LeaseOptions, now: number) {
  const call: LeaseCall = {
    // never 0: the scripts clear a delivery's nonce to 0 when its holder did not end it
    nonce: nonceText(ctx.nonce()),
    deadline: timeText(now + options.leaseMs),
  };
  const args = [
    timeText(now),
    queueId(queue),
    options.max,
    String(options.leaseMs).padStart(8, "0"),
    ctx.promoteLimit,
    call.nonce,
    call.deadline,
    options.maxBytes === undefined || !Number.isFinite(options.maxBytes)
      ? ""
      : Math.floor(options.maxBytes),
    options.firstAlways === false ? 0 : 1,
    fixedDeliveryBytes(ctx.shard, queue),
  ];
  return { args, call };
}

/**
 * Runs a script call that leases, and makes sure no task is left leased by nobody.
 * When the connection to the store closed while the call was in flight, ioredis sent
 * it again on the next connection: if the first run had already leased, its tasks are
 * held without a token. Those are given back (unlease-12.lua: ready again, the attempt
 * not counted) before the answer is returned; the reply that did arrive is kept. If
 * the call failed, or the give-back did, it is tried again until the leases' deadline
 * (LeaseGiveBacks).
 */
async function leasing<R extends { readonly deliveries: readonly Delivery[] }>(
  ctx: EngineContext,
  queue: QueueRef,
  call: LeaseCall,
  run: () => Promise<R>,
): Promise<R> {
  const epoch = ctx.runner.connectionEpoch;
  let out: R;
  try {
    out = await run();
  } catch (err) {
    if (ctx.runner.connectionEpoch !== epoch) void undo(ctx, queue, call, []);
    throw err;
  }
  if (ctx.runner.connectionEpoch !== epoch)
    await undo(
      ctx,
      queue,
      call,
      out.deliveries.map((d) => d.task.id),
    );
  return out;
}

/**
 * Gives back what `call` leased in `queue`, but for `keep` (LeaseGiveBacks never
 * throws); in the order of `delivered`, the call's reply, when it is known.
 */
function undo(
  ctx: EngineContext,
  queue: QueueRef,
  call: LeaseCall,
  keep: readonly string[],
  reason: GiveBackReason = "lost reply",
  delivered?: readonly Delivery[],
): Promise<void> {
  const order = delivered?.map((d) => d.task.id);
  return ctx.giveBacks.giveBack({ queue, keys: ctx.keys(queue), ...call, keep, order, reason });
}

/** Leases up to `max` tasks of one queue. */
export async function lease(
  ctx: EngineContext,
  queue: QueueRef,
  options: LeaseOptions,
): Promise<Delivery[]> {
  return (await leaseCall(ctx, queue, options)).deliveries;
}

/** One lease call's deliveries, and a way to give back those its caller will not deliver. */
export interface LeaseCallResult {
  readonly deliveries: Delivery[];
  /** Their bytes (`deliveryBytes`, summed) when the call had `maxBytes`; else 0. */
  readonly bytes: number;
  /** Gives back every task this call leased but those in `keep` (never throws). */
  giveBack(keep: readonly string[]): Promise<void>;
}

/** As `lease`, for a caller that may give back part of what it got (see LeaseCallResult). */
export async function leaseCall(
  ctx: EngineContext,
  queue: QueueRef,
  options: LeaseOptions,
): Promise<LeaseCallResult> {
  checkLeaseOptions(options);
  const k = ctx.keys(queue);
  const { args, call } = leaseArgs(ctx, queue, options, ctx.clock.now());
  const { deliveries } = await leasing(ctx, queue, call, async () => {
    const reply = await ctx.runner.runBuffer<Buffer[]>(
      "lease",
      [k.tasks, k.state, k.payloads, k.scheduled, k.leased, k.dead, k.due, ...k.ready],
      args,
    );
    // due tasks this call made ready and left (the due loop will not announce them), or
    // the tasks behind the byte bound it stopped at
    const left = Number(reply[0]);
    if (left > 0) ctx.onLeftReady(queue, left);
    return { deliveries: leasedFrom(ctx, queue, reply.slice(1)) };
  });
  const within = await withinBytes(ctx, queue, call, deliveries, options);
  return {
    ...within,
    giveBack: (keep) => undo(ctx, queue, call, keep, "over size", within.deliveries),
  };
}

/** The deliveries in lease-17.lua's reply. */
function leasedFrom(ctx: EngineContext, queue: QueueRef, reply: Buffer[]): Delivery[] {
  const out: Delivery[] = [];
  if (reply.length === 0) return out;
  // { fixed id+state parts, e, (n, error)*, r, (n, record)*, payloads } (see lease-17.lua)
  const fixed = reply[0]!;
  const n = fixed.length / PACKED_WIDTH;
  let at = 1;
  const errors = new Map<number, Buffer>();
  for (let e = Number(reply[at++]!.toString()); e > 0; e--, at += 2)
    errors.set(Number(reply[at]!.toString()), reply[at + 1]!);
  const records = new Map<number, Buffer>();
  for (let r = Number(reply[at++]!.toString()); r > 0; r--, at += 2)
    records.set(Number(reply[at]!.toString()), reply[at + 1]!);
  for (let i = 0; i < n; i++) {
    const start = i * PACKED_WIDTH;
    const id = fixed.toString("latin1", start, start + ID_WIDTH);
    const error = errors.get(i + 1);
    const own = fixed.subarray(start + ID_WIDTH, start + PACKED_WIDTH);
    const state = error ? Buffer.concat([own, error]) : own;
    const { task, nonce } = ctx.toTask(queue, id, records.get(i + 1) ?? "", state, reply[at + i]!);
    const token = encodeLeaseToken({
      shard: ctx.shard,
      command: queue.command,
      tenant: queue.tenant,
      taskId: task.id,
      fence: task.leaseSeq,
      nonce,
    });
    out.push({ task, token, deadline: task.leaseDeadline! });
  }
  return out;
}

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
