import { queueId, type Delivery, type QueueRef } from "@codeq/engine";
import type { Cancel } from "./kick";

/** What a waiter listens to: one queue, or every tenant of a command. */
export type Topic = { readonly queue: QueueRef } | { readonly command: string };

export function topicKey(topic: Topic): string {
  return "queue" in topic ? `q:${queueId(topic.queue)}` : `c:${topic.command}`;
}

/** What one handoff may lease for its taker: at most `max` tasks, for `leaseMs`. */
export interface Reservation {
  readonly max: number;
  readonly leaseMs: number;
  /** Most bytes of tasks the handoff may push at once (LeaseOptions.maxBytes). */
  readonly maxBytes: number;
}

/**
 * A parked waiter that can take tasks straight from an enqueue (a stream): the shard
 * worker then stores a batch and leases from it in one call, instead of waking the
 * waiter to lease in a second one. It stays parked during a handoff, so enqueues that
 * arrive together each hand off to it while its credits last.
 */
export interface Taker {
  /** Credits not set aside: how many tasks it would take if woken now. */
  readonly available: number;
  /** Sets aside credits for one handoff; undefined when it can take none now. */
  reserve(): Reservation | undefined;
  /** The handoff's deliveries (maybe none); the reservation's unused credits come back. */
  deliver(deliveries: readonly Delivery[], reserved: number): void;
}

/** What a waiter would take: a long poll's most tasks, or a stream that says itself. */
export type Wants = number | Taker;

interface Waiter {
  readonly topics: readonly string[];
  readonly wants: Wants;
  /** Wakes it, with the queue whose tasks it is counted on to take (none: the safety net). */
  readonly wake: (queue?: QueueRef) => void;
}

const takerOf = (waiter: Waiter): Taker | undefined =>
  typeof waiter.wants === "number" ? undefined : waiter.wants;

/**
 * How many tasks `waiter` would take if woken now: a taker's credits not set aside
 * (0 while handoffs hold them all), else its most, at least 1.
 */
function takes(waiter: Waiter): number {
  return typeof waiter.wants === "number" ? Math.max(1, waiter.wants) : waiter.wants.available;
}

/** A waiter claimed for a handoff, and the credits it set aside for it. */
export interface Claimed {
  readonly taker: Taker;
  readonly reserved: Reservation;
}

/**
 * Wakes streams and long polls when their queues may have ready tasks. The shard
 * worker is the only writer of its store, so every path that makes a task ready
 * (enqueue, nack, release, promotion, reap, redrive, import) passes through here:
 * no polling is needed.
 *
 * A waiter first reads `version(topics)`, tries to lease, and parks only if the
 * version has not moved since; so a notification between its lease and its
 * parking is never lost. `notify(queue, n)` wakes waiters, oldest first, until their
 * capacities cover the n tasks: one stream with 500 credits and room for two pushes
 * of 100 takes a batch of 100 alone, and a thousand idle streams are not stampeded by
 * one enqueue. A woken waiter
 * is told which queue it was counted on for and leases there first: with room for
 * fewer tasks than its queues hold, it would otherwise take another queue's task that
 * a second waiter was woken for, and the task it was counted on would wait, with
 * other waiters of its queue parked, until the safety-net re-wake. A stream's
 * capacity is what it leases before it backs up, from its credits at the time
 * (handoffs set some aside while it is parked); one with none left is not woken, since
 * its pump leases again when they come back.
 */
export class Notifier {
  /**
   * When each topic was last notified, on `clock`. Topics nobody waits on are
   * forgotten now and then (`wakeOnePerTopic`): queues come and go with tenants.
   */
  private readonly versions = new Map<string, number>();
  /** Counts every notification: stamps only grow, so no version comes back. */
  private clock = 0;
  /**
   * What a topic without a stamp reads: a stamp taken when topics were last
   * forgotten, so a forgotten topic reads later than anything read of it before.
   */
  private floor = 0;
  private readonly waiters = new Map<string, Set<Waiter>>();

  /**
   * A number that changes whenever any of the topics is notified: the latest stamp
   * among them. A notification stamps its topics past every stamp before it, and a
   * forgotten topic reads the floor, taken past every stamp when it was forgotten:
   * neither brings back an earlier version (forgetting one may only look like a
   * notification: a waiter leases once more).
   */
  version(topics: readonly Topic[]): number {
    let latest = 0;
    for (const t of topics) latest = Math.max(latest, this.versions.get(topicKey(t)) ?? this.floor);
    return latest;
  }

  /** `n` tasks may be ready in `queue`: bump its versions and wake waiters whose capacities cover n. */
  notify(queue: QueueRef, n = 1): void {
    const keys = [topicKey({ queue }), topicKey({ command: queue.command })];
    const stamp = ++this.clock;
    for (const key of keys) this.versions.set(key, stamp);
    let covered = 0;
    for (const key of keys) {
      const set = this.waiters.get(key);
      if (!set) continue;
      for (const waiter of set) {
        if (covered >= n) return;
        // a stream whose credits are all set aside for handoffs stays parked: it could
        // take nothing now, and it leases when they come back (its version has moved)
        const room = takes(waiter);
        if (room === 0) continue;
        this.remove(waiter);
        waiter.wake(queue);
        covered += room;
      }
    }
  }

  /**
   * The oldest waiter on `queue` (or on every tenant of its command) that can take a
   * handoff now, with the credits it set aside for it. It is neither woken nor taken
   * out (no version moves): it stays parked, last in line for the next claim, and the
   * caller leases for it and delivers.
   */
  claim(queue: QueueRef): Claimed | undefined {
    for (const key of [topicKey({ queue }), topicKey({ command: queue.command })]) {
      const set = this.waiters.get(key);
      if (!set) continue;
      for (const waiter of set) {
        const taker = takerOf(waiter);
        const reserved = taker?.reserve();
        if (!taker || !reserved) continue;
        this.remove(waiter);
        this.add(waiter);
        return { taker, reserved };
      }
    }
    return undefined;
  }

  /**
   * The safety-net re-wake: bumps the version of every topic that has waiters and
   * wakes one waiter of each that could take a task now, so it leases again even if
   * it saw the queue empty. The versions of topics nobody waits on are forgotten.
   */
  wakeOnePerTopic(): void {
    let forgot = false;
    for (const key of this.versions.keys()) {
      if (this.waiters.has(key)) continue;
      this.versions.delete(key);
      forgot = true;
    }
    if (forgot) this.floor = ++this.clock;
    for (const [key, set] of [...this.waiters.entries()]) {
      this.versions.set(key, ++this.clock);
      for (const waiter of set) {
        if (takes(waiter) === 0) continue;
        this.remove(waiter);
        waiter.wake();
        break;
      }
    }
  }

  /**
   * Resolves when one of the topics is notified, when the version has already moved
   * past `seen`, when `signal` aborts, or after `timeoutMs` (never, when it is Infinity:
   * a stream parks until notified, and a timer per park would only cost). `wants` is
   * how many tasks a long poll would take, or a stream's `Taker`: an enqueue may then
   * `claim` the waiter to hand it tasks instead. Resolves to the queue the waiter was
   * woken for, to lease first (`notify`); undefined otherwise.
   */
  wait(
    topics: readonly Topic[],
    seen: number,
    signal: Cancel,
    timeoutMs: number,
    wants: Wants = 1,
  ): Promise<QueueRef | undefined> {
    if (this.version(topics) !== seen || signal.aborted) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const done = (queue?: QueueRef) => {
        if (timer) clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        this.remove(waiter);
        resolve(queue);
      };
      const onAbort = () => done();
      const waiter: Waiter = { topics: topics.map(topicKey), wants, wake: done };
      const timer = Number.isFinite(timeoutMs) ? setTimeout(done, timeoutMs) : undefined;
      signal.addEventListener("abort", onAbort, { once: true });
      this.add(waiter);
    });
  }

  /** Waiters parked now on `queue`, or on every tenant of its command (for tests). */
  waitingOn(queue: QueueRef): number {
    return [topicKey({ queue }), topicKey({ command: queue.command })].reduce(
      (n, key) => n + (this.waiters.get(key)?.size ?? 0),
      0,
    );
  }

  /** Topics whose version is remembered (for tests). */
  get topicsKnown(): number {
    return this.versions.size;
  }

  /** Waiters parked now (for metrics and tests). */
  get parked(): number {
    const all = new Set<Waiter>();
    for (const set of this.waiters.values()) for (const w of set) all.add(w);
    return all.size;
  }

  private add(waiter: Waiter): void {
    for (const key of waiter.topics) {
      let set = this.waiters.get(key);
      if (!set) this.waiters.set(key, (set = new Set()));
      set.add(waiter);
    }
  }

  private remove(waiter: Waiter): void {
    for (const key of waiter.topics) {
      const set = this.waiters.get(key);
      if (!set) continue;
      set.delete(waiter);
      if (set.size === 0) this.waiters.delete(key);
    }
  }
}
