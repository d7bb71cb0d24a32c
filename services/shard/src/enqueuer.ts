import { Status } from "nice-grpc";
import type { Delivery, EnqueueOutcome, QueueEngine, QueueRef, TaskSpec } from "@codeq/engine";
import type { EnqueueRequest, EnqueueResult, ItemStatus } from "@codeq/proto";
import { requireRole, type Identity } from "@codeq/server-kit";
import { specFromWire, stateToWire } from "@codeq/wire";
import type { BackgroundWork } from "./background";
import { checkBatch } from "./batch-limit";
import type { ShardFence } from "./fence";
import type { Metrics } from "./metrics";
import type { MovingKeys } from "./moving-keys";
import type { Notifier } from "./notifier";
import { invalid, toServerError } from "./status";
import type { Wakeups } from "./wakeups";

const OK: ItemStatus = { code: Status.OK, message: "" };

/** One queue's part of an enqueue: its tasks, and their indexes in the caller's batch. */
interface Part {
  readonly queue: QueueRef;
  readonly specs: TaskSpec[];
  readonly indexes: number[];
}

/** What the enqueue path works with: QueueCore's parts. */
export interface EnqueuerParts {
  readonly engine: QueueEngine;
  readonly notifier: Notifier;
  readonly background: BackgroundWork;
  readonly metrics: Metrics;
  readonly maxBatch: number;
  /** Counts the deliveries a store leased for a parked stream. */
  readonly wakeups: Wakeups;
  /** Ownership under the shard map; undefined for a standalone shard (no map, no check). */
  readonly fence?: ShardFence;
  /** Idempotency keys of a queue moving onto this shard (undefined: no map). */
  readonly movingKeys?: MovingKeys;
}

/**
 * The enqueue path: a batch validated, fenced by ownership, its idempotency keys
 * brought over from a queue's previous shard, stored queue by queue, and the waiters
 * woken (or a parked stream served in the same call).
 */
export class Enqueuer {
  constructor(private readonly parts: EnqueuerParts) {}

  /**
   * Validates the whole batch first (all or nothing), refuses it whole with
   * NotOwnerError if this shard does not own one of its queues, then stores it queue
   * by queue. `seenMapVersion`: the map version the caller routed by (0: unknown).
   */
  async enqueue(
    identity: Identity,
    requests: readonly EnqueueRequest[],
    seenMapVersion = 0,
  ): Promise<EnqueueResult[]> {
    const { engine, fence } = this.parts;
    requireRole(identity, "producer", "enqueue");
    checkBatch("tasks", requests.length, this.parts.maxBatch);
    const groups = new Map<string, Part>();
    requests.forEach((req, i) => {
      if (!req.command) throw invalid(`tasks[${i}].command is required`);
      let group = groups.get(req.command);
      if (!group)
        groups.set(
          req.command,
          (group = {
            queue: { command: req.command, tenant: identity.tenant },
            specs: [],
            indexes: [],
          }),
        );
      group.specs.push(specFromWire(req));
      group.indexes.push(i);
    });
    try {
      // a message names the item by its index in the caller's batch, not in its queue's part
      for (const g of groups.values())
        engine.check(g.queue, g.specs, requests.length > 1 ? g.indexes : undefined);
    } catch (err) {
      throw toServerError(err);
    }
    const parts = [...groups.values()];
    const queues = parts.map((g) => g.queue);
    if (fence) await fence.check(queues, seenMapVersion);
    const unasked = await this.bringOver(parts);
    // checked again as the stores go out (a move may have begun or ended while the keys
    // were asked about), and counted until they end: ShardFence.settled
    const admitted = fence?.admit(queues);
    try {
      return await this.storeAll(requests.length, parts, unasked);
    } finally {
      if (admitted !== undefined) fence?.ended(admitted);
    }
  }

  /** Stores the batch's parts (`enqueue`'s), each part's failure its items' status. */
  private async storeAll(
    size: number,
    parts: readonly Part[],
    unasked: (PromiseRejectedResult | undefined)[] | undefined,
  ): Promise<EnqueueResult[]> {
    const { background } = this.parts;
    const results: EnqueueResult[] = new Array(size);
    await Promise.all(
      parts.map(async ({ queue, specs, indexes }, k) => {
        try {
          if (unasked?.[k]) throw unasked[k].reason;
          const out = await this.store(queue, specs);
          out.forEach((o, j) => {
            results[indexes[j]!] = {
              status: OK,
              taskId: o.id,
              duplicate: o.duplicate,
              state: stateToWire(o.state),
            };
            if (!o.duplicate && o.state === "SCHEDULED") background.recheck();
          });
        } catch (err) {
          // this queue's part failed (the store); the others may have succeeded
          const e = toServerError(err);
          for (const i of indexes)
            results[i] = {
              status: { code: e.code, message: e.details },
              taskId: "",
              duplicate: false,
              state: 0,
            };
        }
      }),
    );
    return results;
  }

  /**
   * Binds here the idempotency keys of the parts (an enqueue's queues) that the shards
   * their queues move from hold (MovingKeys); undefined when no part asks, else each
   * part's failed question, by part (that part fails). Asking another shard takes
   * time, in which a move may end and take a queue off this shard (an abort of the
   * move asked about, or a move of another part's queue), where a task stored then no
   * router reads: the caller checks every part's queue again after it (`admit`), and a
   * refusal refuses the whole call before any part is stored, as the first check does
   * (a router refreshes its map and sends the call again; per part, a refusal would
   * reach the caller as a bare UNAVAILABLE).
   */
  private async bringOver(
    parts: readonly Part[],
  ): Promise<(PromiseRejectedResult | undefined)[] | undefined> {
    const { movingKeys } = this.parts;
    const asking = parts.map((p) => movingKeys?.bringOver(p.queue, p.specs));
    if (asking.every((a) => a === undefined)) return undefined;
    const settled = await Promise.allSettled(asking);
    return settled.map((r) => (r.status === "rejected" ? r : undefined));
  }

  /**
   * Stores one queue's batch and wakes whoever waits for it. When a stream is parked on
   * the queue, the same script call also leases for it (up to its credits) and the
   * tasks go straight to it: one round trip to the store instead of two, and no wake-up
   * in between. Only what may still be ready after that is announced.
   */
  private async store(queue: QueueRef, specs: TaskSpec[]): Promise<EnqueueOutcome[]> {
    const { engine, notifier, metrics } = this.parts;
    const claimed = notifier.claim(queue);
    let deliveries: readonly Delivery[] = [];
    try {
      if (!claimed) {
        const out = await metrics.time("enqueue", () => engine.enqueue(queue, specs));
        const ready = out.filter((o) => !o.duplicate && o.state === "READY").length;
        if (ready > 0) notifier.notify(queue, ready);
        return out;
      }
      const done = await metrics.time("enqueue_lease", () =>
        engine.enqueueAndLease(queue, specs, claimed.reserved),
      );
      deliveries = done.deliveries;
      this.parts.wakeups.delivered(deliveries);
      if (done.readyLeft > 0) notifier.notify(queue, done.readyLeft);
      return done.outcomes;
    } catch (err) {
      // the script may have stored the batch before the failure (a lost reply, a
      // script error part way): whoever waits leases and finds out
      notifier.notify(queue, specs.length);
      throw err;
    } finally {
      claimed?.taker.deliver(deliveries, claimed.reserved.max);
    }
  }
}
