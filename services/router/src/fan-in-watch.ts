import type { Leg } from "./fan-in-leg";
import type { Routing } from "./routing";

/** A wait for a shard stream's answer ran out (`answerOf`). */
const LATE = Symbol("late");

/** What the watch of shard streams' answers needs of the session (FanInSession). */
export interface WatchHost {
  readonly routing: Routing;
  /** Aborted when the session ends. */
  readonly ended: AbortSignal;
  /** Runs `fn` after `ms` unless the session has ended by then; returns what cancels it. */
  later(ms: number, fn: () => void): () => void;
  /** Closes `leg` as failed, for `why` (FanInSession.giveUp). */
  giveUp(leg: Leg, why: string): void;
  /** An answer `answerOf` stopped waiting for has come after all. */
  lateAnswer(): void;
}

/**
 * Times the shard streams' answers against the shard timeout: a shard that answers
 * neither in time nor a health check is given up; one that is alive but late (its
 * store stalls) is kept. Time the client's slow reading held an answer back is not
 * counted against the shard.
 */
export class ShardWatch {
  constructor(private readonly host: WatchHost) {}

  /**
   * What `answer` resolves to, waited for at most the shard timeout. A stream that has
   * not answered by then is given up (its answer then resolves as the stream closes)
   * unless the shard worker is alive: a worker whose store stalls answers a withdrawal
   * late (it reads the store first) but answers its health check. Its stream, which
   * holds tasks its worker runs, is kept, and undefined comes back at once: what the
   * stream holds counts as still held (a client's withdrawal is answered without its
   * credits, as behind a shard that predates withdrawals), and the leg applies the
   * late answer when it comes.
   *
   * A wait in which the stream's reading was held for the client (`Leg.held`), even
   * for a moment, is not counted and waited again: the answer waits behind the pushes
   * before it, on the client's account, not the shard's (and after the client caught
   * up, the router is still reading them when the wait ends).
   */
  async answerOf<T>(leg: Leg, answer: Promise<T>, what: string): Promise<T | undefined> {
    const timeout = this.host.routing.config.shardTimeoutMs;
    let first: T | typeof LATE;
    let read: boolean;
    do {
      const since = Date.now();
      let cancel = () => undefined as void;
      const late = new Promise<typeof LATE>((resolve) => {
        cancel = this.host.later(timeout, () => resolve(LATE));
      });
      first = await Promise.race([answer, late]);
      cancel();
      read = this.readThroughSince(leg, since);
    } while (first === LATE && !read && !leg.closed && !this.host.ended.aborted);
    if (first !== LATE) return first;
    if (leg.closed) return answer;
    if (await leg.conn.alive(timeout, leg.channel)) {
      // an answer that came during the health check is the answer; a later one is acted
      // on when it comes (FanInSession.onMessage), and a drain's round that went without
      // it asks again once it is over
      const meanwhile = await Promise.race([answer, Promise.resolve(LATE)]);
      if (meanwhile !== LATE) return meanwhile as T;
      void answer.then(
        () => this.host.lateAnswer(),
        () => undefined,
      );
      return undefined;
    }
    this.host.giveUp(leg, `it answered neither ${what} nor a health check within ${timeout} ms`);
    return answer;
  }

  /**
   * Watches the answers to the settlements sent on `leg` (one watch per leg at a
   * time): a settlement its shard has not answered within the shard timeout is failed
   * with DEADLINE_EXCEEDED, as a unary one would be, unless the shard worker does not
   * answer a health check either: then the stream is given up (`giveUp`), and every
   * settlement on it fails with UNAVAILABLE. The shard may still apply it (settlements
   * are idempotent: the client sends it again); a late answer is ignored (`Leg.expire`).
   */
  watchSettlements(leg: Leg): void {
    const oldest = leg.oldestSettlement();
    if (leg.watched || leg.closed || oldest === undefined) return;
    leg.watched = true;
    const timeout = this.host.routing.config.shardTimeoutMs;
    const overdue = () =>
      !leg.closed && (leg.oldestSettlement() ?? Infinity) <= performance.now() - timeout;
    this.host.later(oldest + timeout - performance.now(), async () => {
      if (overdue() && !this.readThroughSince(leg, Date.now() - timeout)) {
        // the client reads slowly, and its shard streams are read no further (or were
        // until just now): the answers are late on its account, not the shard's; looked
        // at again later
        this.host.later(timeout, () => {
          leg.watched = false;
          this.watchSettlements(leg);
        });
        return;
      }
      if (overdue()) {
        const alive = await leg.conn.alive(timeout, leg.channel);
        if (this.host.ended.aborted) return;
        // (answers that came during the health check leave nothing to act on)
        if (!alive && overdue()) {
          this.host.giveUp(
            leg,
            `it answered neither a settlement nor a health check within ${timeout} ms`,
          );
          return;
        }
        if (overdue()) leg.expire(timeout);
      }
      leg.watched = false;
      this.watchSettlements(leg);
    });
  }

  /**
   * `leg` has been read since `since` (Date.now()) without a break: its reading has not
   * been held for the client (`Leg.held`) since. An answer late by then is the shard's;
   * otherwise it may wait behind pushes the router has not read, or only just went on
   * reading. (Not the client's `backedUp`: a leg stays held until the client takes its
   * next message, though the queue may already be under the bound.)
   */
  private readThroughSince(leg: Leg, since: number): boolean {
    return !leg.held && leg.readOnAt < since;
  }
}
