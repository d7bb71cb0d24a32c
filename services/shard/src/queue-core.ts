import { ServerError, Status } from "nice-grpc";
import {
  deliveryBytes,
  itemStatus,
  leaseTokenQueue,
  ScriptCode,
  type Delivery,
  type EnqueueOutcome,
  type QueueEngine,
  type QueueRef,
  type SettleOutcome,
  type TaskSpec,
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
import type { ShardConfig } from "./config";
import type { ShardFence } from "./fence";
import type { MovingKeys } from "./moving-keys";
import { requireRole, servesAllTenants, type Identity } from "@codeq/server-kit";
import type { Metrics } from "./metrics";
import type { Notifier, Topic } from "./notifier";
import { invalid, toServerError } from "./status";
import { ackProblem, extendProblem, nackProblem, specFromWire, stateToWire } from "@codeq/wire";
import { NAME_PATTERN } from "@codeq/common";

/** What one lease asks for, validated. */
export interface LeaseAsk {
  readonly commands: readonly string[];
  readonly allTenants: boolean;
  readonly leaseMs: number;
}

const OK: ItemStatus = { code: Status.OK, message: "" };
/** A give-back (or release) the store failed is tried again this often while it keeps failing, ms. */
const GIVE_BACK_RETRY_MS = 1_000;
/** Leases kept for a retry, at most (past it the oldest are left to expire). */
const MAX_UNRETURNED = 10_000;

/** A lease to hand back once the store answers: given back, or released (`release`). */
interface Unreturned {
  readonly token: string;
  readonly release?: { readonly reason: string; readonly counted: boolean };
}

/**
 * The queue operations every RPC shares (unary, streams): identity and role
 * checks, batch limits, the engine call, and the wake-ups that keep streams and the
 * due loop on time.
 */
export class QueueCore {
  /**
   * Leases whose give-back (no worker got them) or release (a closed stream's) the store
   * failed: tried again (`retryGiveBacks`).
   */
  private unreturned: Unreturned[] = [];
  private retryTimer: NodeJS.Timeout | undefined;
  private retrying = false;
  /** Shutdown: nothing is kept for a retry any more. */
  private retriesStopped = false;

  private unaryTurn = 0;

  constructor(
    readonly engine: QueueEngine,
    readonly notifier: Notifier,
    private readonly background: BackgroundWork,
    private readonly metrics: Metrics,
    readonly config: ShardConfig,
    /** Ownership under the shard map; undefined for a standalone shard (no map, no check). */
    private readonly fence?: ShardFence,
    /** Idempotency keys of a queue moving onto this shard (undefined: no map). */
    private readonly movingKeys?: MovingKeys,
  ) {}

  /**
   * Open LeaseStreams by the id their subscribed answer gave: what each releases,
   * uncounted, when its router's drain runs out (InterruptLeaseStream).
   */
  readonly interrupters = new Map<string, () => Promise<number>>();

  /** Counts open streams (a gauge). */
  streamOpened(delta: number): void {
    this.metrics.openStreams.inc(delta);
  }

  checkBatch(what: string, n: number): void {
    if (n < 1) throw invalid(`${what}: at least one item is required`);
    if (n > this.config.maxBatch)
      throw invalid(`${what}: at most ${this.config.maxBatch} items per call, got ${n}`);
  }

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
    requireRole(identity, "producer", "enqueue");
    this.checkBatch("tasks", requests.length);
    const groups = new Map<string, { queue: QueueRef; specs: TaskSpec[]; indexes: number[] }>();
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
        this.engine.check(g.queue, g.specs, requests.length > 1 ? g.indexes : undefined);
    } catch (err) {
      throw toServerError(err);
    }
    if (this.fence)
      await this.fence.check(
        [...groups.values()].map((g) => g.queue),
        seenMapVersion,
      );
    const parts = [...groups.values()];
    const unasked = await this.bringOver(parts);
    const results: EnqueueResult[] = new Array(requests.length);
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
            if (!o.duplicate && o.state === "SCHEDULED") this.background.recheck();
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
   * time, in which a move's abort may end and take a queue off this shard, where a
   * task stored then no router reads: the queues asked for are checked again, and a
   * refusal refuses the whole call before any part is stored, as the first check does
   * (a router refreshes its map and sends the call again; per part, a refusal would
   * reach the caller as a bare UNAVAILABLE).
   */
  private async bringOver(
    parts: readonly { queue: QueueRef; specs: TaskSpec[] }[],
  ): Promise<(PromiseRejectedResult | undefined)[] | undefined> {
    const asking = parts.map((p) => this.movingKeys?.bringOver(p.queue, p.specs));
    if (asking.every((a) => a === undefined)) return undefined;
    const settled = await Promise.allSettled(asking);
    const asked = parts.filter((_, k) => asking[k] && settled[k]!.status === "fulfilled");
    if (this.fence && asked.length > 0) await this.fence.check(asked.map((p) => p.queue));
    return settled.map((r) => (r.status === "rejected" ? r : undefined));
  }

  /**
   * Stores one queue's batch and wakes whoever waits for it. When a stream is parked on
   * the queue, the same script call also leases for it (up to its credits) and the
   * tasks go straight to it: one round trip to the store instead of two, and no wake-up
   * in between. Only what may still be ready after that is announced.
   */
  private async store(queue: QueueRef, specs: TaskSpec[]): Promise<EnqueueOutcome[]> {
    const claimed = this.notifier.claim(queue);
    let deliveries: readonly Delivery[] = [];
    try {
      if (!claimed) {
        const out = await this.metrics.time("enqueue", () => this.engine.enqueue(queue, specs));
        const ready = out.filter((o) => !o.duplicate && o.state === "READY").length;
        if (ready > 0) this.notifier.notify(queue, ready);
        return out;
      }
      const done = await this.metrics.time("enqueue_lease", () =>
        this.engine.enqueueAndLease(queue, specs, claimed.reserved),
      );
      deliveries = done.deliveries;
      this.delivered(deliveries);
      if (done.readyLeft > 0) this.notifier.notify(queue, done.readyLeft);
      return done.outcomes;
    } catch (err) {
      // the script may have stored the batch before the failure (a lost reply, a
      // script error part way): whoever waits leases and finds out
      this.notifier.notify(queue, specs.length);
      throw err;
    } finally {
      claimed?.taker.deliver(deliveries, claimed.reserved.max);
    }
  }

  /** Counts deliveries and has the reaper look at the earliest deadline among them. */
  private delivered(deliveries: readonly Delivery[]): void {
    if (deliveries.length === 0) return;
    this.metrics.delivered.inc(deliveries.length);
    this.background.wakeAt(deliveries[0]!.deadline);
  }

  /** Validates a lease request's subscription and the caller's rights to it. */
  leaseAsk(
    identity: Identity,
    commands: readonly string[],
    allTenants: boolean,
    leaseMs: number,
  ): LeaseAsk {
    requireRole(identity, "worker", "lease");
    if (commands.length === 0) throw invalid("commands: at least one command is required");
    if (commands.length > 32) throw invalid(`commands: at most 32, got ${commands.length}`);
    for (const [i, c] of commands.entries()) {
      if (!NAME_PATTERN.test(c)) throw invalid(`commands[${i}] must match ${NAME_PATTERN.source}`);
    }
    if (allTenants) {
      requireRole(identity, "cross-tenant-worker", "all_tenants");
      const denied = commands.find((c) => !servesAllTenants(identity, c));
      if (denied !== undefined)
        throw new ServerError(
          Status.PERMISSION_DENIED,
          `all_tenants: this credential serves every tenant only of ${identity.commands?.join(", ")}, not ${denied}`,
        );
    }
    const ms = leaseMs || this.config.defaultLeaseMs;
    if (ms < 1000 || ms > 43_200_000)
      throw invalid(`lease_duration_ms must be 1000..43200000, got ${leaseMs}`);
    return { commands: [...new Set(commands)], allTenants, leaseMs: ms };
  }

  /** The wake-up topics of a lease ask. */
  topics(identity: Identity, ask: LeaseAsk): Topic[] {
    return ask.commands.map((command) =>
      ask.allTenants ? { command } : { queue: { command, tenant: identity.tenant } },
    );
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
    this.delivered(out);
    return out;
  }

  /**
   * Settles items by lease token. A token of another tenant (or another shard, or
   * forged) is NOT_FOUND, so it tells the caller nothing.
   */
  async ack(identity: Identity, items: readonly AckItem[]): Promise<ItemStatus[]> {
    const problem = ackProblem(items);
    if (problem) throw invalid(problem);
    return this.settle(identity, items, (own) =>
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
    const outs = await this.settle(identity, items, (own) =>
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
    this.afterFailure(
      items.map((i) => i.leaseToken),
      outs,
    );
    return outs.map((o) => itemStatus(o.code));
  }

  async extend(identity: Identity, items: readonly ExtendItem[]): Promise<ExtendResult[]> {
    const problem = extendProblem(items);
    if (problem) throw invalid(problem);
    const outs = await this.settle(identity, items, (own) =>
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
    this.checkBatch("lease_tokens", tokens.length);
    const own = tokens.filter((token) => this.owns(identity, token));
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
    this.afterFailure(tokens, outs);
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
      this.keepForRetry(tokens.map((token) => ({ token, release: { reason, counted } })));
      throw err;
    }
  }

  /**
   * Gives back leases no worker got (its caller left, or its stream closed before the
   * push): ready again at once, the attempt not counted. When the store fails it, it
   * throws, and the leases are given back once the store answers again (every
   * GIVE_BACK_RETRY_MS), rather than held by no one until they expire (up to 12 h).
   * A late give-back is safe: a lease that expired meanwhile, or was leased again,
   * is fenced by its token.
   */
  async giveBack(tokens: readonly string[]): Promise<void> {
    if (tokens.length === 0) return;
    try {
      await this.giveBackNow(tokens);
    } catch (err) {
      this.keepForRetry(tokens.map((token) => ({ token })));
      throw err;
    }
  }

  /** Keeps `leases` for `retryGiveBacks`, the newest MAX_UNRETURNED at most. */
  private keepForRetry(leases: readonly Unreturned[], first = false): void {
    if (this.retriesStopped) return;
    if (first) this.unreturned.unshift(...leases);
    else this.unreturned.push(...leases);
    if (this.unreturned.length > MAX_UNRETURNED)
      this.unreturned.splice(0, this.unreturned.length - MAX_UNRETURNED);
    this.retryTimer ??= setInterval(() => void this.retryGiveBacks(), GIVE_BACK_RETRY_MS);
    this.retryTimer.unref();
  }

  private async giveBackNow(tokens: readonly string[]): Promise<void> {
    const outs = await this.metrics.time("give_back", () => this.engine.giveBack(tokens));
    this.metrics.givenBack.inc(outs.filter((o) => o.code === ScriptCode.Ok).length);
    this.afterFailure(tokens, outs);
  }

  /** Gives back (or releases) what failed before, a batch at a time, until the store fails again. */
  private async retryGiveBacks(): Promise<void> {
    if (this.retrying) return;
    this.retrying = true;
    try {
      while (this.unreturned.length > 0) {
        const batch = this.unreturned.splice(0, this.config.maxBatch);
        try {
          await this.handBack(batch);
        } catch {
          return; // still away: the next tick tries again what is left
        }
      }
      clearInterval(this.retryTimer);
      this.retryTimer = undefined;
    } finally {
      this.retrying = false;
    }
  }

  /**
   * Gives back or releases `batch`, each lease as it was kept, a call per kind; when the
   * store fails one, it and the kinds after it are kept for the next try.
   */
  private async handBack(batch: readonly Unreturned[]): Promise<void> {
    const kinds = new Map<string, Unreturned[]>();
    for (const lease of batch) {
      const key = lease.release ? `${lease.release.counted}:${lease.release.reason}` : "";
      const kind = kinds.get(key);
      if (kind) kind.push(lease);
      else kinds.set(key, [lease]);
    }
    const left = [...kinds.values()];
    for (let k = 0; k < left.length; k++) {
      const how = left[k]![0]!.release;
      const tokens = left[k]!.map((l) => l.token);
      try {
        await (how ? this.release(tokens, how.reason, how.counted) : this.giveBackNow(tokens));
      } catch (err) {
        this.keepForRetry(left.slice(k).flat(), true);
        throw err;
      }
    }
  }

  /** Stops trying give-backs again (shutdown: the store closes; those leases expire). */
  stopRetries(): void {
    this.retriesStopped = true;
    clearInterval(this.retryTimer);
    this.retryTimer = undefined;
    this.unreturned = [];
  }

  /** Which of these leases are still held (a stream forgetting those settled elsewhere). */
  stillLeased(tokens: readonly string[]): Promise<boolean[]> {
    return this.metrics.time("still_leased", () => this.engine.stillLeased(tokens));
  }

  /** Counts leases a stream stopped tracking while still leased. */
  leasesForgotten(n: number): void {
    this.metrics.forgotten.inc(n);
  }

  /** Wakes waiters of queues whose tasks became ready, and the due loop for scheduled ones. */
  private afterFailure(tokens: readonly string[], outs: readonly SettleOutcome[]): void {
    const ready = new Map<string, { queue: QueueRef; n: number }>();
    outs.forEach((o, i) => {
      if (o.code !== ScriptCode.Ok) return;
      if (o.state === "SCHEDULED") this.background.recheck();
      if (o.state !== "READY") return;
      const t = this.engine.decodeToken(tokens[i]!);
      if (!t) return;
      const key = `${t.command}:${t.tenant}`;
      const entry = ready.get(key) ?? { queue: { command: t.command, tenant: t.tenant }, n: 0 };
      entry.n++;
      ready.set(key, entry);
    });
    for (const { queue, n } of ready.values()) this.notifier.notify(queue, n);
  }

  /**
   * A lease token of the caller's tenant, or of a command it serves for every tenant.
   * Only the two names are read here: the settle verifies the whole token (a malformed
   * one is NOT_FOUND there too).
   */
  private owns(identity: Identity, token: string): boolean {
    const t = leaseTokenQueue(token);
    return !!t && (t.tenant === identity.tenant || servesAllTenants(identity, t.command));
  }

  private async settle<I extends { leaseToken: string }>(
    identity: Identity,
    items: readonly I[],
    run: (own: I[]) => Promise<SettleOutcome[]>,
  ): Promise<SettleOutcome[]> {
    requireRole(identity, "worker", "settling a lease");
    this.checkBatch("items", items.length);
    const outcomes: SettleOutcome[] = new Array(items.length);
    const own: I[] = [];
    const where: number[] = [];
    items.forEach((item, i) => {
      if (!this.owns(identity, item.leaseToken)) {
        outcomes[i] = { code: ScriptCode.NotFound };
      } else {
        own.push(item);
        where.push(i);
      }
    });
    if (own.length > 0) {
      let results: SettleOutcome[];
      try {
        results = await run(own);
      } catch (err) {
        throw toServerError(err);
      }
      results.forEach((r, j) => (outcomes[where[j]!] = r));
    }
    return outcomes;
  }
}
