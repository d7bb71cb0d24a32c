import type { EngineContext } from "./engine-context";
import { queueId, type QueueRef } from "./keys";
import { buildRecord, type TaskSpec } from "./task-spec";
import {
  encodeRecord,
  PACKED_WIDTH,
  sameState,
  STATE_OF_LETTER,
  STATE_WIDTH,
  writeState,
  type TaskState,
} from "./task-record";
import { ID_WIDTH } from "./task-id";
import { checkLeaseOptions, type LeaseOptions } from "./lease-options";
import { leaseArgs, leasedFrom, leasing, withinBytes, type Delivery } from "./lease";

export interface EnqueueOutcome {
  readonly id: string;
  /** True when the idempotency key was live: `id` and `state` are the original's. */
  readonly duplicate: boolean;
  /** READY or SCHEDULED for a new task; the original's state for a duplicate (undefined once it is gone). */
  readonly state: TaskState | undefined;
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
 * the queue (priority order, as `lease` in lease.ts), in one script call: the shard
 * worker hands a fresh batch to a waiting stream without a second round trip.
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
