import type { Redis } from "ioredis";
import { createEngineContext, type EngineContext, type EngineOptions } from "./engine-context";
import {
  checkLimit,
  cleanup,
  listDead,
  purge,
  redrive,
  type CleanupOutcome,
  type DeadBatchOutcome,
  type DeadPage,
} from "./dead-letters";
import { invalidArgument } from "./errors";
import { FairLeaser } from "./fair-lease";
import type { QueueRef } from "./keys";
import { decodeLeaseToken } from "./lease-token";
import { enqueue, enqueueAndLease, type EnqueuedAndLeased, type EnqueueOutcome } from "./enqueue";
import { lease, type Delivery } from "./lease";
import { checkLeaseMs, MAX_BATCH, type LeaseOptions } from "./lease-options";
import { dueQueues, nextDueAt, promote, reap, type Reaped } from "./queue-maintenance";
import { getTask, queuePage, queues, stats, type QueueStats } from "./queue-reads";
import {
  bindIdempotencyKeys,
  confirmExport,
  exportBatch,
  heldTasks,
  idempotencyBindings,
  reservedIds,
  type BindingsPage,
  type IdempotencyBinding,
  importTasks,
  lookupIdempotencyKeys,
  restoreExport,
  type ExportedTask,
  type ImportOutcome,
  type Placement,
} from "./migration";
import {
  ack,
  extend,
  nack,
  stillLeased,
  type AckInput,
  type ExtendInput,
  type NackInput,
  type SettleOutcome,
} from "./settle";
import { buildRecord, checkName, type ItemName, type TaskSpec } from "./task-spec";
import type { StoredTask } from "./task-record";

/**
 * The queue engine of one shard: every task transition as one atomic Lua script on
 * the shard's own store. Names are validated here because they become keys.
 */
export class QueueEngine {
  private readonly fair: FairLeaser;

  private constructor(private readonly ctx: EngineContext) {
    this.fair = new FairLeaser(ctx);
  }

  /** Opens the engine on a connection: defines the scripts on it and loads the token secret. */
  static async open(redis: Redis, options: EngineOptions): Promise<QueueEngine> {
    return new QueueEngine(await createEngineContext(redis, options));
  }

  get shard(): string {
    return this.ctx.shard;
  }

  /** Stores tasks in one queue (all validated first; all or nothing on bad input). */
  async enqueue(queue: QueueRef, specs: readonly TaskSpec[]): Promise<EnqueueOutcome[]> {
    checkBatch(queue, specs);
    const out = await enqueue(this.ctx, queue, specs);
    this.fair.saw(queue);
    return out;
  }

  /**
   * Stores tasks in one queue as `enqueue` does, then leases up to `options.max` of its
   * ready tasks (highest priority first, as `lease`) in the same atomic call.
   */
  async enqueueAndLease(
    queue: QueueRef,
    specs: readonly TaskSpec[],
    options: LeaseOptions,
  ): Promise<EnqueuedAndLeased> {
    checkBatch(queue, specs);
    const out = await enqueueAndLease(this.ctx, queue, specs, options);
    this.fair.saw(queue);
    return out;
  }

  /**
   * Validates a batch exactly as `enqueue` would, without storing anything. `at`: each
   * spec's index in the caller's request, for the messages (by default its index here).
   */
  check(queue: QueueRef, specs: readonly TaskSpec[], at?: readonly number[]): void {
    // a bad command is named by the first of its items in the caller's batch
    checkBatch(queue, specs, at?.[0]);
    const now = this.ctx.clock.now();
    specs.forEach((spec, i) =>
      buildRecord(
        spec,
        "00000000000000000000000000",
        now,
        this.ctx.limits,
        at ? at[i]! : specs.length > 1 ? i : "task",
      ),
    );
  }

  /** Leases up to `max` tasks of one queue: highest priority first, FIFO within one. */
  async lease(queue: QueueRef, options: LeaseOptions): Promise<Delivery[]> {
    checkQueue(queue);
    return lease(this.ctx, queue, options);
  }

  /** Leases across every tenant of a command, round-robin (the cross-tenant worker). */
  async leaseAcrossTenants(
    command: string,
    options: LeaseOptions,
    firstTenant?: string,
  ): Promise<Delivery[]> {
    checkName("command", command);
    checkLeaseMs(options.leaseMs);
    return this.fair.lease(command, options, firstTenant);
  }

  async ack(items: readonly AckInput[]): Promise<SettleOutcome[]> {
    return ack(this.ctx, items);
  }

  async nack(items: readonly NackInput[]): Promise<SettleOutcome[]> {
    for (const item of items) {
      if (
        item.delayMs !== undefined &&
        (!Number.isInteger(item.delayMs) || item.delayMs < 0 || item.delayMs > 86_400_000)
      ) {
        throw invalidArgument(`nack delay must be 0..86400000 ms, got ${item.delayMs}`);
      }
      if (item.error !== undefined && Buffer.byteLength(item.error) > 4096)
        throw invalidArgument("nack error must be at most 4096 bytes");
    }
    return nack(this.ctx, items);
  }

  /**
   * Gives leases of a closed stream back at once: ready again at the head of the list.
   * They were delivered: the attempt counts and `reason` becomes the last error.
   */
  async release(tokens: readonly string[], reason = "lease released"): Promise<SettleOutcome[]> {
    return nack(
      this.ctx,
      tokens.map((token) => ({ token, delayMs: 0, error: reason })),
      "release",
    );
  }

  /**
   * Gives back leases no worker got (its caller left, or its answer had no room): ready
   * again at the head of the list, the attempt not counted, the last error kept.
   */
  async giveBack(tokens: readonly string[]): Promise<SettleOutcome[]> {
    return nack(
      this.ctx,
      tokens.map((token) => ({ token, delayMs: 0 })),
      "uncounted",
    );
  }

  /**
   * Takes back leases from workers that did not fail them (the shard worker's drain at
   * shutdown ran out): ready again at the head of the list, the attempt not counted,
   * `reason` the last error.
   */
  async interrupt(tokens: readonly string[], reason: string): Promise<SettleOutcome[]> {
    return nack(
      this.ctx,
      tokens.map((token) => ({ token, delayMs: 0, error: reason })),
      "uncounted",
    );
  }

  /**
   * For each token, whether its delivery still holds the task's lease (a read: what a
   * stream uses to forget leases settled elsewhere).
   */
  async stillLeased(tokens: readonly string[]): Promise<boolean[]> {
    return stillLeased(this.ctx, tokens);
  }

  async extend(items: readonly ExtendInput[]): Promise<SettleOutcome[]> {
    for (const item of items) if (item.leaseMs) checkLeaseMs(item.leaseMs);
    return extend(this.ctx, items);
  }

  /** Takes back up to `limit` (1..MAX_BATCH) expired leases of one queue. */
  async reap(queue: QueueRef, limit = 1000): Promise<Reaped> {
    checkLimit("reap limit", limit, MAX_BATCH);
    return reap(this.ctx, queue, limit);
  }

  /** Makes up to `limit` (1..MAX_BATCH) due scheduled tasks of one queue ready. */
  async promote(queue: QueueRef, limit = 1000): Promise<number> {
    checkLimit("promote limit", limit, MAX_BATCH);
    return promote(this.ctx, queue, limit);
  }

  /** Queues with a due scheduled task or an expired lease, earliest first. */
  async dueQueues(limit = 100): Promise<QueueRef[]> {
    return dueQueues(this.ctx, limit);
  }

  /**
   * When the next scheduled task or lease deadline of this shard falls due (undefined:
   * none); with `passOver`, the next of a queue it does not pass over, among the first
   * `among` queues in time.
   */
  async nextDueAt(passOver?: (queue: QueueRef) => boolean, among = 1): Promise<number | undefined> {
    return nextDueAt(this.ctx, passOver, among);
  }

  async getTask(queue: QueueRef, id: string): Promise<StoredTask | undefined> {
    checkQueue(queue);
    return getTask(this.ctx, queue, id);
  }

  async stats(queue: QueueRef): Promise<QueueStats> {
    checkQueue(queue);
    return stats(this.ctx, queue);
  }

  /** The queues of this shard's registry: every one that holds anything (only one command's when given). */
  async queues(command?: string): Promise<QueueRef[]> {
    return queues(this.ctx, command);
  }

  /** Part of the registry from `cursor` ("0" first), at least `count` queues but at its end (queue-reads.ts, `queuePage`). */
  async queuePage(cursor: string, count: number): Promise<{ next: string; queues: QueueRef[] }> {
    if (!/^\d{1,20}$/.test(cursor)) throw invalidArgument(`cursor must be digits, got ${cursor}`);
    if (!Number.isInteger(count) || count < 1)
      throw invalidArgument(`count must be a positive integer, got ${count}`);
    return queuePage(this.ctx, cursor, count);
  }

  async listDead(
    queue: QueueRef,
    pageSize = 100,
    cursor?: string,
    bounds?: { maxBytes?: number; firstAlways?: boolean },
  ): Promise<DeadPage> {
    checkQueue(queue);
    return listDead(this.ctx, queue, pageSize, cursor, bounds);
  }

  async redrive(queue: QueueRef, limit = 100, ids?: readonly string[]): Promise<DeadBatchOutcome> {
    checkQueue(queue);
    return redrive(this.ctx, queue, limit, ids);
  }

  async purge(queue: QueueRef, limit = 1000, ids?: readonly string[]): Promise<DeadBatchOutcome> {
    checkQueue(queue);
    return purge(this.ctx, queue, limit, ids);
  }

  /** Applies retention to one queue: up to `limit` (1..MAX_CLEANUP_BATCH) records of each kind. */
  async cleanup(queue: QueueRef, limit = 1000): Promise<CleanupOutcome> {
    checkLimit("cleanup limit", limit, MAX_CLEANUP_BATCH);
    return cleanup(this.ctx, queue, limit);
  }

  /** Reserves the next batch to move: at most `limit` tasks and (past the first) `maxBytes` bytes. */
  async exportBatch(
    queue: QueueRef,
    limit = 100,
    maxBytes?: number,
    placement?: Placement,
  ): Promise<ExportedTask[]> {
    checkQueue(queue);
    return exportBatch(this.ctx, queue, limit, maxBytes, placement);
  }

  /** Deletes reserved tasks the target holds (`homeFrom`: the aborted migration sending them home). */
  async confirmExport(queue: QueueRef, ids: readonly string[], homeFrom?: string): Promise<number> {
    checkQueue(queue);
    return confirmExport(this.ctx, queue, ids, homeFrom);
  }

  /** Which of `ids` the queue holds, in any state, or took in by an import of `migrationId` and has not sent home since. */
  async heldTasks(queue: QueueRef, ids: readonly string[], migrationId: string): Promise<string[]> {
    checkQueue(queue);
    return heldTasks(this.ctx, queue, ids, migrationId);
  }

  /** The ids of the batch reserved to move (exportBatch), not yet confirmed or restored. */
  async reservedIds(queue: QueueRef): Promise<string[]> {
    checkQueue(queue);
    return reservedIds(this.ctx, queue);
  }

  async restoreExport(queue: QueueRef): Promise<number> {
    checkQueue(queue);
    return restoreExport(this.ctx, queue);
  }

  /** Stores moved tasks; with `migrationId`, records their ids for an abort (HeldTasks). */
  async importTasks(
    queue: QueueRef,
    tasks: readonly ExportedTask[],
    migrationId?: string,
    placement?: Placement,
  ): Promise<ImportOutcome> {
    checkQueue(queue);
    const out = await importTasks(this.ctx, queue, tasks, migrationId, placement);
    // an import of nothing (the mover asking how busy this shard is) adds no queue here
    if (tasks.length > 0) this.fair.saw(queue);
    return out;
  }

  /**
   * A page of the queue's live idempotency keys with their task ids (for the mover):
   * those expiring after `after` (the first page: after now); `next` starts the next.
   */
  async idempotencyBindings(
    queue: QueueRef,
    after: number | undefined = undefined,
    limit = 1000,
  ): Promise<BindingsPage> {
    checkQueue(queue);
    return idempotencyBindings(this.ctx, queue, after, limit);
  }

  /** Which of `keys` are live in the queue, with the task each deduplicates to. */
  async lookupIdempotencyKeys(
    queue: QueueRef,
    keys: readonly string[],
  ): Promise<IdempotencyBinding[]> {
    checkQueue(queue);
    return lookupIdempotencyKeys(this.ctx, queue, keys);
  }

  /** Binds idempotency keys moved from another shard; returns how many were bound. */
  async bindIdempotencyKeys(
    queue: QueueRef,
    bindings: readonly IdempotencyBinding[],
  ): Promise<number> {
    checkQueue(queue);
    return bindIdempotencyKeys(this.ctx, queue, bindings);
  }

  /** Verifies a lease token of this shard; undefined when it is malformed, forged or another shard's. */
  decodeToken(token: string) {
    const fields = decodeLeaseToken(token);
    return fields && fields.shard === this.ctx.shard ? fields : undefined;
  }
}

/** A batch's queue names and size, as every enqueue path checks them. */
function checkBatch(queue: QueueRef, specs: readonly TaskSpec[], where?: ItemName): void {
  checkQueue(queue, where);
  if (specs.length > MAX_BATCH)
    throw invalidArgument(`at most ${MAX_BATCH} tasks per batch, got ${specs.length}`);
}

/** `where`: the batch item the command came from (the tenant is the caller's, not an item's). */
function checkQueue(queue: QueueRef, where?: ItemName): void {
  checkName("command", queue.command, where);
  checkName("tenant", queue.tenant);
}

/**
 * Most records one cleanup call deletes of each kind. A script hands a command at most
 * one id per record (Lua's unpack stops near 8,000 values, and a script that fails
 * half-way is not rolled back); reap and promote, which hand two values per task,
 * stay at MAX_BATCH.
 */
export const MAX_CLEANUP_BATCH = 5000;
