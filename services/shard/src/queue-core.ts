import {
  deliveryBytes,
  itemStatus,
  ScriptCode,
  type Delivery,
  type QueueEngine,
  type QueueRef,
} from "@codeq/engine";
import type {
  EnqueueRequest,
  EnqueueResult,
  ExtendResult,
  ItemStatus,
  AckItem,
  NackItem,
  ExtendItem,
} from "@codeq/proto";
import type { BackgroundWork } from "./background";
import { checkBatch } from "./batch-limit";
import type { ShardConfig } from "./config";
import { Enqueuer } from "./enqueuer";
import type { ShardFence } from "./fence";
import { GiveBackRetries } from "./give-back-retries";
import { leaseTopics, validateLeaseAsk, type LeaseAsk } from "./lease-ask";
import type { MovingKeys } from "./moving-keys";
import { requireRole, type Identity } from "@codeq/server-kit";
import type { Metrics } from "./metrics";
import type { Notifier, Topic } from "./notifier";
import { ownsLease, settleOwn } from "./settle-own";
import { invalid, toServerError } from "./status";
import { Wakeups } from "./wakeups";
import { ackProblem, extendProblem, nackProblem } from "@codeq/wire";

/**
 * The queue operations every RPC shares (unary, streams): identity and role
 * checks, batch limits, the engine call, and the wake-ups that keep streams and the
 * due loop on time.
 */
export class QueueCore {
  /**
   * Leases whose give-back (no worker got them) or release (a closed stream's) the store
   * failed: tried again (`GiveBackRetries`).
   */
  private readonly retries: GiveBackRetries;
  private readonly enqueuer: Enqueuer;
  private readonly wakeups: Wakeups;

  private unaryTurn = 0;

  constructor(
    readonly engine: QueueEngine,
    readonly notifier: Notifier,
    private readonly background: BackgroundWork,
    private readonly metrics: Metrics,
    readonly config: ShardConfig,
    /** Ownership under the shard map; undefined for a standalone shard (no map, no check). */
    fence?: ShardFence,
    /** Idempotency keys of a queue moving onto this shard (undefined: no map). */
    movingKeys?: MovingKeys,
  ) {
    this.wakeups = new Wakeups(engine, notifier, background, metrics);
    this.retries = new GiveBackRetries(
      {
        giveBack: (tokens) => this.giveBackNow(tokens),
        release: (tokens, reason, counted) => this.release(tokens, reason, counted),
      },
      config.maxBatch,
    );
    this.enqueuer = new Enqueuer({
      engine,
      notifier,
      background,
      metrics,
      maxBatch: config.maxBatch,
      wakeups: this.wakeups,
      fence,
      movingKeys,
    });
  }

  /**
   * Open LeaseStreams by the id their subscribed answer gave: what each releases,
   * uncounted, when its router's drain runs out (InterruptLeaseStream).
   */
  readonly interrupters = new Map<string, () => Promise<number>>();

  /** Counts open streams (a gauge). */
  streamOpened(delta: number): void {
    this.metrics.openStreams.inc(delta);
  }

  /** Validates, fences and stores a batch of tasks (see `Enqueuer.enqueue`). */
  enqueue(
    identity: Identity,
    requests: readonly EnqueueRequest[],
    seenMapVersion = 0,
  ): Promise<EnqueueResult[]> {
    return this.enqueuer.enqueue(identity, requests, seenMapVersion);
  }

  /** Validates a lease request's subscription and the caller's rights to it (`validateLeaseAsk`). */
  leaseAsk(
    identity: Identity,
    commands: readonly string[],
    allTenants: boolean,
    leaseMs: number,
  ): LeaseAsk {
    return validateLeaseAsk(identity, commands, allTenants, leaseMs, this.config.defaultLeaseMs);
  }

  /** The wake-up topics of a lease ask. */
  topics(identity: Identity, ask: LeaseAsk): Topic[] {
    return leaseTopics(identity, ask);
  }

  /**
   * Where the next unary lease starts among its commands: each call starts one
   * further, so a poller of several commands is not served only the first while it has
   * a backlog (a stream keeps its own rotation).
   */
  nextStart(): number {
    return this.unaryTurn++;
  }

  /**
   * Leases up to `max` tasks over the ask's commands, starting at command `start`
   * (rotation for fairness), or at `first` when given: the queue a waiter was woken
   * for (`Notifier.wait`), whose tasks it is counted on to take.
   */
  async lease(
    identity: Identity,
    ask: LeaseAsk,
    max: number,
    start = 0,
    first?: QueueRef,
  ): Promise<Delivery[]> {
    const out: Delivery[] = [];
    const n = ask.commands.length;
    const woken = first ? ask.commands.indexOf(first.command) : -1;
    if (woken >= 0) start = woken;
    let bytes = 0;
    for (let i = 0; i < n && out.length < max && bytes < this.config.maxResponseBytes; i++) {
      const command = ask.commands[(start + i) % n]!;
      const want = {
        max: max - out.length,
        leaseMs: ask.leaseMs,
        // one answer: the tasks of every command share the bound
        maxBytes: this.config.maxResponseBytes - bytes,
        firstAlways: out.length === 0,
      };
      let got: Delivery[];
      try {
        got = await this.metrics.time("lease", () =>
          ask.allTenants
            ? this.engine.leaseAcrossTenants(
                command,
                want,
                i === 0 && woken >= 0 ? first?.tenant : undefined,
              )
            : this.engine.lease({ command, tenant: identity.tenant }, want),
        );
      } catch (err) {
        // the commands before this one leased, but the call fails: nobody gets their
        // tasks, so they are given back (not left leased until they expire)
        await this.giveBack(out.map((d) => d.token)).catch(() => undefined);
        throw err;
      }
      // what the commands after this one may still add (none after the last)
      if (i < n - 1) for (const d of got) bytes += deliveryBytes(d);
      out.push(...got);
    }
    this.wakeups.delivered(out);
    return out;
  }

  /**
   * Settles items by lease token. A token of another tenant (or another shard, or
   * forged) is NOT_FOUND, so it tells the caller nothing.
   */
  async ack(identity: Identity, items: readonly AckItem[]): Promise<ItemStatus[]> {
    const problem = ackProblem(items);
    if (problem) throw invalid(problem);
    return settleOwn(identity, items, this.config.maxBatch, (own) =>
      this.metrics.time("ack", () =>
        this.engine.ack(
          own.map((i) => ({
            token: i.leaseToken,
            result: i.result.length > 0 ? i.result : undefined,
          })),
        ),
      ),
    ).then((outs) => outs.map((o) => itemStatus(o.code)));
  }

  async nack(identity: Identity, items: readonly NackItem[]): Promise<ItemStatus[]> {
    const problem = nackProblem(items);
    if (problem) throw invalid(problem);
    const outs = await settleOwn(identity, items, this.config.maxBatch, (own) =>
      this.metrics.time("nack", () =>
        this.engine.nack(
          own.map((i) => ({
            token: i.leaseToken,
            delayMs: i.delayMs,
            error: i.error,
            deadLetter: i.deadLetter,
          })),
        ),
      ),
    );
    this.wakeups.afterFailure(
      items.map((i) => i.leaseToken),
      outs,
    );
    return outs.map((o) => itemStatus(o.code));
  }

  async extend(identity: Identity, items: readonly ExtendItem[]): Promise<ExtendResult[]> {
    const problem = extendProblem(items);
    if (problem) throw invalid(problem);
    const outs = await settleOwn(identity, items, this.config.maxBatch, (own) =>
      this.metrics.time("extend", () =>
        this.engine.extend(own.map((i) => ({ token: i.leaseToken, leaseMs: i.leaseDurationMs }))),
      ),
    );
    // a lease shortened is due sooner than the due loop may sleep
    let soonest = Infinity;
    for (const o of outs) if (o.deadline) soonest = Math.min(soonest, o.deadline);
    if (soonest < Infinity) this.background.wakeAt(soonest);
    return outs.map((o) => ({ status: itemStatus(o.code), leaseDeadlineMs: o.deadline ?? 0 }));
  }

  /**
   * Gives back leases a router took for `identity` and could not hand over (the
   * caller left, the router stopped waiting, or its answer had no room for them):
   * never delivered, so their attempt does not count. Only the caller's own tokens count.
   */
  async releaseFor(identity: Identity, tokens: readonly string[]): Promise<void> {
    requireRole(identity, "worker", "releasing a lease");
    checkBatch("lease_tokens", tokens.length, this.config.maxBatch);
    const own = tokens.filter((token) => ownsLease(identity, token));
    try {
      await this.giveBack(own);
    } catch (err) {
      throw toServerError(err);
    }
  }

  /**
   * Gives back leases a closed stream held: ready again at once, the attempt counted,
   * unless `counted` is false (the shard worker took them back at shutdown).
   */
  async release(tokens: readonly string[], reason: string, counted = true): Promise<void> {
    if (tokens.length === 0) return;
    const outs = await this.metrics.time("release", () =>
      counted ? this.engine.release(tokens, reason) : this.engine.interrupt(tokens, reason),
    );
    this.metrics.released.inc(outs.filter((o) => o.code === ScriptCode.Ok).length);
    this.wakeups.afterFailure(tokens, outs);
  }

  /**
   * Releases, as `release` does, the leases a stream held as it closed; when the store
   * fails it, they are released once it answers again, with the give-backs, rather
   * than held by no one until they expire (and counted then, though a drain meant not
   * to count them).
   */
  async releaseClosed(tokens: readonly string[], reason: string, counted = true): Promise<void> {
    if (tokens.length === 0) return;
    try {
      await this.release(tokens, reason, counted);
    } catch (err) {
      this.retries.keep(tokens.map((token) => ({ token, release: { reason, counted } })));
      throw err;
    }
  }

  /**
   * Gives back leases no worker got (its caller left, or its stream closed before the
   * push): ready again at once, the attempt not counted. When the store fails it, it
   * throws, and the leases are given back once the store answers again (every
   * GIVE_BACK_RETRY_MS, `GiveBackRetries`), rather than held by no one until they
   * expire (up to 12 h). A late give-back is safe: a lease that expired meanwhile, or was leased again,
   * is fenced by its token.
   */
  async giveBack(tokens: readonly string[]): Promise<void> {
    if (tokens.length === 0) return;
    try {
      await this.giveBackNow(tokens);
    } catch (err) {
      this.retries.keep(tokens.map((token) => ({ token })));
      throw err;
    }
  }

  private async giveBackNow(tokens: readonly string[]): Promise<void> {
    const outs = await this.metrics.time("give_back", () => this.engine.giveBack(tokens));
    this.metrics.givenBack.inc(outs.filter((o) => o.code === ScriptCode.Ok).length);
    this.wakeups.afterFailure(tokens, outs);
  }

  /** Stops trying give-backs again (shutdown: the store closes; those leases expire). */
  stopRetries(): void {
    this.retries.stop();
  }

  /** Which of these leases are still held (a stream forgetting those settled elsewhere). */
  stillLeased(tokens: readonly string[]): Promise<boolean[]> {
    return this.metrics.time("still_leased", () => this.engine.stillLeased(tokens));
  }

  /** Counts leases a stream stopped tracking while still leased. */
  leasesForgotten(n: number): void {
    this.metrics.forgotten.inc(n);
  }
}
