import type { EngineContext } from "./engine-context";
import { queueId, type QueueRef } from "./keys";
import { nonceText, PACKED_WIDTH, timeText, type StoredTask } from "./task-record";
import { ID_WIDTH } from "./task-id";
import { encodeLeaseToken } from "./lease-token";
import type { GiveBackReason } from "./give-back";
import { fitting, fixedDeliveryBytes } from "./lease-size";
import { checkLeaseOptions, type LeaseOptions } from "./lease-options";

/** One delivery: the task and the token that proves it. */
export interface Delivery {
  readonly task: StoredTask;
  readonly token: string;
  readonly deadline: number;
}

/**
 * The deliveries of one lease call that fit in `options.maxBytes`, and their bytes
 * (`deliveryBytes`, summed; 0 when there is no bound); the rest are given back before
 * the answer (LeaseGiveBacks tries again if that fails). The lease script stops at the
 * bound itself, counting each delivery at least as this does, so this seldom gives
 * anything back.
 */
export async function withinBytes(
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

/** What a lease call writes into every task it delivers, besides the lease sequence. */
interface LeaseCall {
  /** This call's nonce (14 digits). */
  readonly nonce: string;
  /** Its lease deadline (ms, 13 digits). */
  readonly deadline: string;
}

/** lease-17.lua's arguments, and the call they make. */
export function leaseArgs(ctx: EngineContext, queue: QueueRef, options: LeaseOptions, now: number) {
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
export async function leasing<R extends { readonly deliveries: readonly Delivery[] }>(
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
export function leasedFrom(ctx: EngineContext, queue: QueueRef, reply: Buffer[]): Delivery[] {
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
