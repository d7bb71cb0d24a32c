import { randomUUID } from "node:crypto";
import { leaseTokenShard } from "@codeq/engine";
import { ClientError, ServerError, Status } from "nice-grpc";
import { LeaseStreamRequest, type LeaseStreamResponse, type Subscription } from "@codeq/proto";
import { CALLER_CODES as SETTLE_CALLER_CODES, STREAM_DRAIN_SHARE } from "@codeq/server-kit";
import { settlementsProblem } from "@codeq/wire";
import { creditShares, idleAllowance, turnsPending } from "./credit-shares";
import { MAX_BATCH } from "./enqueue";
import { ClientSide } from "./fan-in-client";
import { StreamSettlements } from "./fan-in-settle";
import { ShardWatch } from "./fan-in-watch";
import { LEASE_STREAM_PATH, Leg } from "./fan-in-leg";
import { readSettled, StreamAcks } from "./stream-acks";
import { UnsentPushes } from "./unsent-pushes";
import { countField, decoded, embedded, passThrough, Raw } from "./wire-bytes";
import { watchCredential } from "./credential-expiry";
import { asServerError, routerShuttingDown } from "./fan-out";
import type { Forward, Routing } from "./routing";
import { isShardFailure, RouterRefused, type ShardConn } from "./shard-pool";

/**
 * Errors about the request itself: every shard would say the same, so the client gets
 * them. Those of a settlement (SETTLE_CALLER_CODES), and for a shard stream
 * FAILED_PRECONDITION too.
 */
const CALLER_CODES = new Set([...SETTLE_CALLER_CODES, Status.FAILED_PRECONDITION]);

const MAX_REOPEN_DELAY_MS = 5_000;
/** LeaseStreamResponse.tasks (a TaskBatch, whose field 1 are the tasks). */
const TASKS_FIELD = 2;
const EMPTY = new Uint8Array(0);
/** A shard stream is recycled (to take back its credits) no sooner than this after opening. */
const RECYCLE_MIN_AGE_MS = 250;
/** While a shard stream is starved, credits are looked at again this often. */
const RECHECK_MS = 250;
/**
 * How long a client stream's end waits for the shards to take back what never reached
 * the client, at most, ms (giveBackUnsent); the shard streams close after it whatever.
 */
const GIVE_BACK_WAIT_MS = 2_000;
/** Credits are looked at again this often while a demoted shard (`Leg.demoted`) holds some. */
const DEMOTED_RECHECK_MS = 25;
/**
 * With fewer credits than shards and nothing pushed for this long, turns are looked
 * at only every IDLE_TURNS_RECHECK_MS: an idle stream costs few messages.
 */
const IDLE_TURNS_AFTER_MS = 5_000;
const IDLE_TURNS_RECHECK_MS = 1_000;
/**
 * A shard no longer wanted, or any during the drain, is asked what its stream still
 * holds this often (see `probe`).
 */
const PROBE_MS = 2_000;

/** A message for the client that pushes tasks (a shard's push, passed on as its bytes). */
const carriesTasks = (m: LeaseStreamResponse) =>
  m instanceof Raw
    ? countField(embedded(m.bytes, TASKS_FIELD) ?? EMPTY, 1) > 0
    : (m.tasks?.tasks.length ?? 0) > 0;

/**
 * A client's LeaseStream through the router: one stream to the client, fanned in
 * from one LeaseStream per shard that may hold the subscribed queues (drained
 * shards first), following map changes live.
 *
 * Credits: the client's outstanding credits are split over the wanted shards, by
 * demand: a shard whose stream has pushed nothing for a while keeps a few (to deliver
 * at once when tasks appear) and the busy shards share the rest; the holders never
 * have more than the client granted, so the client never has more tasks in flight
 * than it asked for. During a move the source soon has nothing ready, and the target
 * gets nearly all the credits. An idle stream holding more than its share gives the
 * surplus back on the stream (withdraw_credits; see `recycleIdle`). A busy one over
 * its share keeps it: it uses its credits, and gets fewer back as the client returns
 * them. The client may take back its unused credits (withdraw_credits): the router
 * takes them back from every shard stream, then answers.
 *
 * Settlements: acks, nacks and extends go to the shard their token names, on that
 * shard's stream while it is open (the shard then stops tracking the lease), by a
 * unary call otherwise, and are answered once per client request in its order.
 *
 * A shard that stops serving a queue keeps its stream until every task it pushed
 * is settled, as the shard itself confirms (`closeIfDone`), then the stream closes
 * (nothing held is left to release). A shard
 * stream that breaks is reopened with backoff while the shard is wanted; the
 * client's stream goes on.
 *
 * At the router's shutdown the stream drains: the shards' credits are taken back and
 * no more go to them (a task pushed now would only be released at the end), the map
 * is no longer followed, and settlements go on as before. The stream ends (UNAVAILABLE,
 * "reconnect") once nothing it delivered is left unsettled, or once
 * STREAM_DRAIN_SHARE of the router's grace period is over; then, in that second case,
 * the shards are asked to release what the streams still hold without counting the
 * attempts (`interruptHeld`), and the shard streams close (the shards release what is
 * left, counted). When the credential the stream was opened with expires, it drains
 * the same way within `streamCredentialGraceMs` and ends with UNAUTHENTICATED; what is
 * still held then is released as failed attempts, as when a client's stream breaks.
 */
export class FanInSession {
  private readonly id = randomUUID();
  /** What is queued for the client, and the pace its requests and the shards' pushes are read at. */
  private readonly client: ClientSide;
  /** The client's acks, nacks and extends, on their way to the shards. */
  private readonly settlements: StreamSettlements;
  /** Times the shard streams' answers. */
  private readonly watch: ShardWatch;
  private readonly ended = new AbortController();
  private readonly legs = new Map<string, Leg>();
  private readonly reopenAttempts = new Map<string, number>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private subscription: Subscription | undefined;
  private subscribedSent = false;
  private wanted: string[] = [];
  /** Client credits not yet used by a pushed task. */
  private outstanding = 0;
  private requestIds = 0;
  private unwatch: (() => void) | undefined;
  /** A rebalance is scheduled for when the lease rate limit has tokens again. */
  private throttleWait = false;
  /** A rebalance is scheduled because a shard stream is starved. */
  private recheckWait = false;
  /**
   * Shutdown, or the caller's credential expired: no more credits to the shards; the
   * stream ends once nothing is in flight.
   */
  private drainingNow = false;
  /** What the stream ends with once drained. */
  private drainError: () => ServerError = routerShuttingDown;
  /** The shutdown drain's time ran out with tasks still unsettled: the client failed none of them. */
  private drainRanOut = false;
  /** While draining: the shards are being asked whether their streams hold anything. */
  private confirming = false;
  /** A late answer came while they were asked (ShardWatch.answerOf): asked again after. */
  private confirmAgain = false;
  /** The client half-closed: it wants no more tasks, only its answers. */
  private halfClosed = false;
  /** Since the half-close, every shard stream has answered the withdrawal of its credits. */
  private creditsBack = false;
  /** When any shard stream last pushed tasks. */
  private lastPushAt = Date.now();
  /**
   * The client's withdrawals not yet answered, in order, each with the credits the
   * client granted after it (added once it is answered). No credits go to the shards
   * meanwhile.
   */
  private readonly withdrawals: { requestId: number; creditsAfter: number }[] = [];
  /** Pushes that will not reach the client, to give back (`release`). */
  private readonly unsent = new UnsentPushes();
  /** `release`, begun when the session ended. */
  private released: Promise<void> = Promise.resolve();
  /** When the session ended. */
  private endedAt = 0;

  constructor(
    private readonly routing: Routing,
    private readonly f: Forward,
    private readonly draining: AbortSignal,
  ) {
    // a client may settle all it may hold at once, and send one more message; its
    // withdrawals not answered yet count as answers queued
    this.client = new ClientSide(
      routing.config.maxStreamCredits + MAX_BATCH,
      () => this.withdrawals.length,
    );
    this.settlements = new StreamSettlements({
      routing,
      f,
      client: this.client,
      leg: (shard) => this.legs.get(shard),
      end: (error) => this.end(error),
      answered: () => {
        this.endIfDrained();
        this.endIfFinished();
      },
      settledOn: (shards) => this.afterSettled(shards),
    });
    this.watch = new ShardWatch({
      routing,
      ended: this.ended.signal,
      later: (ms, fn) => this.later(ms, fn),
      giveUp: (leg, why) => this.giveUp(leg, why),
      lateAnswer: () => (this.confirmAgain ||= this.confirming),
    });
  }

  /** `requests` as the router's server reads them: a message that only acks may come as StreamAcks. */
  async *run(
    requests: AsyncIterable<LeaseStreamRequest | StreamAcks>,
  ): AsyncGenerator<LeaseStreamResponse> {
    const config = this.routing.config;
    // the router's shutdown is no fault of the client's: what it holds then goes back
    // uncounted; the expiry of its credential is its own to foresee, and an attempt
    // (else a task that takes longer than a token lives would go round for ever)
    const onDrain = () =>
      this.drain(Math.floor(config.graceMs * STREAM_DRAIN_SHARE), routerShuttingDown, true);
    const onCancel = () => this.end();
    if (this.draining.aborted) onDrain();
    this.draining.addEventListener("abort", onDrain, { once: true });
    this.f.signal.addEventListener("abort", onCancel, { once: true });
    const unwatchCredential = watchCredential(this.f, config.streamCredentialRecheckMs, (error) =>
      this.drain(config.streamCredentialGraceMs, error, false),
    );
    void this.read(requests);
    this.routing.metrics.openStreams.inc();
    try {
      for await (const message of this.client.messages()) {
        yield message;
        this.client.taken(message);
      }
    } finally {
      this.routing.metrics.openStreams.dec();
      this.end();
      this.draining.removeEventListener("abort", onDrain);
      this.f.signal.removeEventListener("abort", onCancel);
      unwatchCredential();
      this.unwatch?.();
      for (const t of this.timers) clearTimeout(t);
      await this.released;
    }
  }

  /**
   * Run as the session ends, not once the transport has taken what is queued for the
   * client (one that does not read would hold that until the server's grace period is
   * over, and the shard streams would then close releasing everything as attempts).
   * Gives back, uncounted, the tasks shards pushed that never reached the client (those
   * queued for it when it ended, taken out by `end`, and those pushed since); waits
   * (at most half the bound) for the settlements on their way to the shards, whose
   * credits `end` took back; when a drain ran out, has the shards release what their
   * streams still hold uncounted (`interruptHeld`); gives back what was pushed
   * meanwhile; then closes the shard streams, whose unused credits go back to the
   * tenant's lease rate. The give-back comes first: a closing stream releases what
   * it holds as a failed attempt (on a task's last attempt, dead-lettered), and a later
   * give-back would find those leases gone. Bounded: a shard that does not answer does
   * not hold the others' streams open.
   */
  private async release(): Promise<void> {
    let bound: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.all([
          this.unsent.giveBack(this.routing, this.f),
          // settlements already on their way to the shards go first: a stream's close,
          // or an interruption, that overtook an ack would release its finished task
          // as an attempt, or have the ack refused as stale, and run it again
          this.client.settlementsAnswered(GIVE_BACK_WAIT_MS / 2).then(() => this.interruptHeld()),
        ])
          // what the shards pushed meanwhile, before they took the withdrawal
          .then(() => this.unsent.giveBack(this.routing, this.f)),
        new Promise<void>((resolve) => (bound = setTimeout(resolve, GIVE_BACK_WAIT_MS))),
      ]);
    } finally {
      clearTimeout(bound);
      for (const leg of this.legs.values()) {
        this.refundUnused(leg);
        leg.close("client stream ended");
      }
    }
  }

  /**
   * A shard stream closes: the credits it was granted and did not use go back to the
   * tenant's lease rate, which was charged when they were handed out (a stream that
   * breaks, is recycled or given up would otherwise be charged again for the credits
   * handed to the next one).
   */
  private refundUnused(leg: Leg): void {
    this.refundLeases(leg.granted);
    leg.granted = 0;
  }

  /** Gives `n` back to the tenant's lease rate limit, charged when credits went out. */
  private refundLeases(n: number): void {
    if (n > 0) this.routing.limits.leaseBucket(this.f.identity.tenant)?.refund(n);
  }

  /**
   * Takes the pushes queued for the client and not written yet out of its queue (answers
   * stay), to give back uncounted with what shards push from here on (`release`).
   */
  private keepQueuedPushes(): void {
    for (const queued of this.client.takeQueuedWhere(carriesTasks))
      this.unsent.keep(decoded(queued));
  }

  /**
   * When the drain ran out: has each shard release what its stream still holds with
   * the attempts not counted (InterruptLeaseStream), as the shard's own drain would,
   * before the streams close and release it as failed attempts. A shard that does not
   * answer (or is too old to know the call) releases them counted when its stream
   * closes.
   */
  private async interruptHeld(): Promise<void> {
    if (!this.drainRanOut) return;
    // within the bound `release` races this against, less a margin for the answers
    const deadline = new Date(this.endedAt + GIVE_BACK_WAIT_MS - 100);
    await Promise.all(
      [...this.legs.values()]
        .filter((leg) => !leg.closed && leg.streamId)
        .map((leg) =>
          leg.conn.internal
            .interruptLeaseStream({ streamId: leg.streamId }, { deadline })
            .catch(() => undefined),
        ),
    );
  }

  private end(error?: ServerError): void {
    if (this.ended.signal.aborted) return;
    this.ended.abort();
    this.endedAt = Date.now();
    // pushes not written yet never will be (answers still are): given back uncounted by
    // `release`, not written after all and then released as attempts, or, when a drain
    // ran out, written to a client whose tasks the shards have taken back
    this.keepQueuedPushes();
    // and the shards push nothing more for it (what `release` gives back is ready at once,
    // and a stream that kept its credits could lease it again), while `release` waits for
    // the settlements on their way
    for (const leg of this.legs.values())
      if (!leg.closed && leg.withdrawable && leg.granted > 0) void leg.withdraw();
    this.client.end(error);
    this.released = this.release();
  }

  /**
   * Stops handing out credits and following the map; ends with `error` once nothing
   * is in flight, or after `ms`, then releasing what the client still holds without
   * counting the attempts when `uncounted`. A second drain (the router shuts down while
   * a stream's credential has expired) may only end it sooner.
   */
  private drain(ms: number, error: () => ServerError, uncounted: boolean): void {
    if (this.ended.signal.aborted) return;
    this.later(ms, () => {
      this.drainRanOut = uncounted;
      this.end(error());
    });
    if (this.drainingNow) return;
    this.drainingNow = true;
    this.drainError = error;
    this.unwatch?.();
    this.unwatch = undefined;
    // the shards push nothing more, and say what their streams hold (the counts follow)
    void this.askAll();
    for (const leg of this.legs.values()) this.probe(leg);
    this.endIfDrained();
  }

  /**
   * While draining: ends the stream once no task it delivered is left unsettled. The
   * counts kept here are checked with the shards first (a withdrawal's answer says
   * what each stream holds), as ending it releases whatever they still hold.
   */
  private endIfDrained(): void {
    if (!this.drainingNow || this.confirming || this.client.answering > 0) return;
    const open = () => [...this.legs.values()].filter((l) => !l.closed);
    if (open().some((l) => l.inflight > 0)) return;
    this.confirming = true;
    void this.askAll().then((answered) => {
      this.confirming = false;
      const again = this.confirmAgain;
      this.confirmAgain = false;
      // a shard that still holds something reset its count: its settlement comes back
      // here, as does the last answer to the client; a shard that answered late (its
      // store stalls) has not confirmed the count here, and its answer comes back here
      if (answered && this.client.answering === 0 && open().every((l) => l.inflight === 0))
        this.end(this.drainError());
      // a late answer came meanwhile, perhaps the one this round went without
      else if (again) this.endIfDrained();
    });
  }

  /**
   * The client half-closed: it wants no more tasks. The shards' credits are taken
   * back, and the stream ends once they are (a shard answers the withdrawal after
   * every task it pushed before it: those are given back uncounted, as the client
   * cannot settle them, rather than cut off on their way and released as attempts)
   * and every request the client sent is answered (its last acks, above all: ending
   * at once would cancel them on the shards' streams and release those leases), or
   * after the shard timeout; then the shard streams close and release what is still
   * held.
   */
  private finish(): void {
    if (this.ended.signal.aborted) return;
    this.halfClosed = true;
    // pushes still queued for a client that reads slowly: it can settle none of them
    // now, so they go back uncounted with what shards push from here on, rather than
    // reach it and be released as attempts when the stream ends
    this.keepQueuedPushes();
    this.unwatch?.();
    this.unwatch = undefined;
    void this.askAll().then(() => {
      this.creditsBack = true;
      this.endIfFinished();
    });
    this.later(this.routing.config.shardTimeoutMs, () => this.end());
  }

  private endIfFinished(): void {
    if (
      this.halfClosed &&
      this.creditsBack &&
      this.client.answering === 0 &&
      this.withdrawals.length === 0
    )
      this.end();
  }

  /**
   * Reads the client's requests. While the settlements it sent and has no answer to
   * add up to more than it may hold (`ClientSide.roomForMore`), no more are read:
   * HTTP/2 flow control then holds the client back, and the router does not buffer
   * without bound for a client that sends faster than a shard answers. Every
   * settlement is answered within about twice the shard timeout
   * (ShardWatch.watchSettlements, the unary calls' deadlines), so a shard that stalls
   * holds up this stream's others only that long.
   */
  private async read(requests: AsyncIterable<LeaseStreamRequest | StreamAcks>): Promise<void> {
    try {
      for await (const req of requests) {
        if (this.ended.signal.aborted) return;
        this.handle(req);
        if (this.client.roomForMore(true)) continue;
        await this.client.waitForRoom();
        if (this.ended.signal.aborted) return;
      }
      this.finish(); // the client half-closed: it wants no more tasks
    } catch (err) {
      this.end(asServerError(err));
    }
  }

  private handle(message: LeaseStreamRequest | StreamAcks): void {
    if (message instanceof StreamAcks) {
      // the shard must still be one of the map's, as settleByToken asks
      const leg = this.subscription && this.legs.get(message.shard);
      if (leg && !leg.closed && message.count <= MAX_BATCH && this.routing.pool.has(leg.conn.id)) {
        this.grant(message.credits);
        void this.settlements.settleAcks(leg, message);
        return;
      }
    }
    const req = message instanceof StreamAcks ? message.decode() : message;
    if (!this.subscription) {
      if (!req.subscribe)
        throw new ServerError(
          Status.INVALID_ARGUMENT,
          "the first LeaseStream message must carry subscribe",
        );
      if (req.subscribe.commands.length === 0)
        throw new ServerError(
          Status.INVALID_ARGUMENT,
          "subscribe.commands: at least one command is required",
        );
      this.subscription = req.subscribe;
      if (!this.drainingNow) this.unwatch = this.routing.cache.onChange(() => this.follow());
      this.follow();
    } else if (req.subscribe) {
      throw new ServerError(
        Status.INVALID_ARGUMENT,
        "subscribe is allowed only in the first LeaseStream message",
      );
    }
    if (req.withdrawCredits) this.withdraw(req.requestId);
    this.grant(req.credits);
    const n = req.acks.length + req.nacks.length + req.extends.length;
    if (n === 0) return;
    if (n > MAX_BATCH)
      throw new ServerError(
        Status.INVALID_ARGUMENT,
        `at most ${MAX_BATCH} acks, nacks and extends per message`,
      );
    const problem = settlementsProblem(req);
    if (problem) throw new ServerError(Status.INVALID_ARGUMENT, problem);
    void this.settlements.settle(req);
  }

  /**
   * Adds credits the client granted, and shares them out; while a withdrawal is on its
   * way they wait for its answer, as the client sent them after it.
   */
  private grant(credits: number): void {
    if (credits === 0) return;
    const max = this.routing.config.maxStreamCredits;
    const last = this.withdrawals.at(-1);
    const after = last ? last.creditsAfter : this.outstanding;
    if (after + credits > max)
      throw new ServerError(Status.RESOURCE_EXHAUSTED, `credits outstanding may not exceed ${max}`);
    if (last) {
      last.creditsAfter += credits;
      return;
    }
    this.outstanding += credits;
    this.rebalance();
  }

  /** The client takes back its unused credits: queued behind any withdrawal on its way. */
  private withdraw(requestId: number): void {
    this.withdrawals.push({ requestId, creditsAfter: 0 });
    if (this.withdrawals.length === 1) void this.nextWithdrawal();
  }

  /**
   * Answers the first queued withdrawal: takes back what every shard stream holds
   * (tasks they pushed before that reach the client first), then what no shard held.
   * A shard that predates withdraw_credits keeps what it holds (its stream is
   * recycled instead once nothing it pushed is in flight); the answer leaves those
   * out, and they may still be used.
   */
  private async nextWithdrawal(): Promise<void> {
    const first = this.withdrawals[0];
    if (!first) return;
    await this.askAll((leg) => {
      if (leg.granted > 0 && leg.inflight === 0 && !this.drainingNow) this.recycle(leg);
    });
    if (this.ended.signal.aborted) return;
    let kept = 0;
    let held = 0;
    for (const leg of this.legs.values()) {
      if (leg.closed) continue;
      kept += leg.granted;
      held += leg.inflight;
    }
    this.client.answer({
      withdrawn: {
        requestId: first.requestId,
        credits: Math.max(0, this.outstanding - kept),
        held,
      },
    });
    this.outstanding = kept + first.creditsAfter;
    this.withdrawals.shift();
    if (this.withdrawals.length > 0) void this.nextWithdrawal();
    else this.rebalance();
    this.endIfFinished();
  }

  /** Opens streams to shards that now hold subscribed queues; lets go of the others. */
  private follow(): void {
    const sub = this.subscription;
    if (!sub || this.ended.signal.aborted || this.drainingNow || this.halfClosed) return;
    this.wanted = this.routing.leaseShards(sub.commands, this.f.identity.tenant, sub.allTenants);
    for (const shard of this.wanted) {
      const leg = this.legs.get(shard);
      if (!leg) {
        this.open(shard);
        continue;
      }
      leg.wanted = true;
      leg.demoted = this.demoted(shard);
    }
    for (const leg of this.legs.values()) {
      if (this.wanted.includes(leg.conn.id)) continue;
      const was = leg.wanted;
      leg.wanted = false;
      this.closeIfDone(leg);
      if (was) this.probe(leg);
    }
    this.rebalance();
  }

  /**
   * True when `shard` holds subscribed queues but their new tasks go elsewhere (a
   * move's source). Not tracked for all_tenants subscriptions, whose current shard
   * differs by tenant.
   */
  private demoted(shard: string): boolean {
    const sub = this.subscription;
    if (!sub || sub.allTenants) return false;
    const tenant = this.f.identity.tenant;
    return !sub.commands.some((c) => this.routing.currentShard(c, tenant) === shard);
  }

  private open(shard: string): Leg | undefined {
    if (this.ended.signal.aborted || this.legs.has(shard)) return undefined;
    let conn: ShardConn;
    try {
      conn = this.routing.pool.get(shard);
      conn.admit();
    } catch {
      this.reopenLater(shard);
      return undefined;
    }
    const leg = new Leg(
      conn,
      () => ++this.requestIds,
      (l) => this.watch.watchSettlements(l),
    );
    leg.demoted = this.demoted(shard);
    this.legs.set(shard, leg);
    leg.send({ subscribe: this.subscription! });
    const timeout = this.routing.config.shardTimeoutMs;
    this.later(timeout, () => {
      if (!leg.accepting)
        this.giveUp(leg, `it did not answer the subscription within ${timeout} ms`);
    });
    const { client, channel } = conn.nextQueue();
    leg.channel = channel;
    const responses = client.leaseStream(leg.requests, {
      metadata: this.f.metadata,
      signal: leg.abort.signal,
      onTrailer: () => this.onShardEnded(leg),
    });
    void (async () => {
      let failure: unknown;
      try {
        for await (const res of responses) {
          this.onMessage(leg, res);
          while (
            this.client.backedUp &&
            !this.ended.signal.aborted &&
            !leg.closed &&
            !leg.shardEnded
          ) {
            leg.held = true;
            await this.client.heldBack();
            leg.held = false;
            leg.readOnAt = Date.now();
          }
        }
      } catch (err) {
        failure = err;
      }
      this.onClosed(leg, failure);
    })();
    return leg;
  }

  /**
   * The shard ended `leg`'s stream (its status came: a failure comes at once, ahead of
   * pushes not read yet while the client reads slowly). The shard released what the
   * stream held: its pushes queued for the client, and those not read yet, are not
   * passed on (their credits are the client's again), and the stream is read to its
   * end, which `onClosed` then handles as usual.
   */
  private onShardEnded(leg: Leg): void {
    if (leg.closed || leg.shardEnded) return;
    leg.shardEnded = true;
    this.dropQueuedFrom(leg.conn.id);
    this.client.releaseLegs();
  }

  private onMessage(leg: Leg, raw: Raw<LeaseStreamResponse>): void {
    // the shard releases what a closed stream pushed: it must not reach the client
    if (leg.closed) return;
    // pushed tasks go on as the shard's bytes, counted but never decoded here
    const pushed = countField(embedded(raw.bytes, TASKS_FIELD) ?? EMPTY, 1);
    if (pushed > 0) {
      // nor what an ended one pushed (its answers still count: the settlements they
      // answer were applied)
      if (leg.shardEnded) return;
      const now = Date.now();
      const wasIdle = leg.idle(now);
      leg.lastPushAt = now;
      this.lastPushAt = now;
      leg.withdrawnIdle = false;
      leg.granted = Math.max(0, leg.granted - pushed);
      this.outstanding = Math.max(0, this.outstanding - pushed);
      leg.inflight += pushed;
      // the client stream is over, or the client wants no more: these go back with
      // what was queued for it
      if (this.ended.signal.aborted || this.halfClosed) this.unsent.keep(raw.value);
      else this.client.push(passThrough(raw));
      // busy again: its share grows from the credits no shard holds; or fewer credits
      // are left than shards, which then take turns, and no other message may come to
      // start the next turn (a shard holding a credit with nothing to push says nothing)
      const turns = this.wanted.length > 1 && this.outstanding < this.wanted.length;
      if (wasIdle || turns) this.rebalance();
      return;
    }
    const settled = readSettled(raw.bytes);
    if (settled) {
      leg.settled(settled.requestId, settled.settled);
      return;
    }
    const res = raw.value;
    if (res.withdrawn) {
      leg.withdrawn(res.withdrawn);
      // the tenant's lease rate limit, charged when the credits were handed out, gets
      // back what came back unused, however late
      this.refundLeases(res.withdrawn.credits);
      if (this.ended.signal.aborted) return;
      this.rebalance();
      // an answer that came after ShardWatch.answerOf stopped waiting for it is acted on here
      if (!leg.wanted) this.closeIfDone(leg, true);
      this.endIfDrained();
      return;
    }
    if (res.subscribed && !leg.shardEnded) {
      this.reopenAttempts.delete(leg.conn.id);
      leg.conn.record(undefined);
      leg.accepted(res.subscribed.withdrawCredits, res.subscribed.streamId);
      // its credits were held to an idle stream's until now
      this.rebalance();
      if (!this.subscribedSent) {
        this.subscribedSent = true;
        this.client.push({
          subscribed: {
            streamId: this.id,
            leaseDurationMs: res.subscribed.leaseDurationMs,
            withdrawCredits: true,
          },
        });
      }
    }
  }

  private onClosed(leg: Leg, failure: unknown): void {
    const shard = leg.conn.id;
    const wasOpen = !leg.closed;
    leg.close(
      failure ? String((failure as Error).message ?? failure) : "shard ended it",
      isShardFailure(failure),
    );
    if (wasOpen) this.refundUnused(leg);
    if (this.legs.get(shard) === leg) this.legs.delete(shard);
    if (this.ended.signal.aborted || !wasOpen) return;
    if (!leg.shardEnded) this.dropQueuedFrom(shard);
    const err = leg.conn.toServerError(failure);
    // about the request itself, or a shard refusing the router: no reopening changes it
    if (err instanceof ServerError && err.code === Status.RESOURCE_EXHAUSTED) {
      // the router let the client's credits (and messages) through by its own limits:
      // the shard's are lower, a setting to fix, not the client's doing
      this.routing.logger.error(
        { shard, error: err.details },
        "a shard refused a stream the router's limits allow: keep the router's MAX_STREAM_CREDITS and MAX_MESSAGE_BYTES no larger than the shard workers'",
      );
      this.end(
        new ServerError(
          err.code,
          `shard ${shard} refused the stream: ${err.details} (the router allows more: an operator's setting; meanwhile grant fewer credits)`,
        ),
      );
      return;
    }
    if (
      err instanceof RouterRefused ||
      (err instanceof ServerError && CALLER_CODES.has(err.code))
    ) {
      this.end(err);
      return;
    }
    if (isShardFailure(failure)) leg.conn.record(failure);
    this.routing.logger.info(
      { shard, error: err instanceof ServerError ? err.details : String(err) },
      "shard lease stream closed; reopening while the shard is wanted",
    );
    if (this.wanted.includes(shard) && !this.drainingNow) this.reopenLater(shard);
    this.rebalance();
    this.endIfDrained();
  }

  /**
   * A shard stream ended or closed: the shard released what it held, so its pushes still
   * queued for a client that reads slowly are not written to it after all (it would run
   * tasks whose leases are gone, and its acks be refused). The credits they used are the
   * client's again. A shard has one stream at a time, and pushes of a stream closed
   * before were taken out at its close: the lease tokens' shard says whose they are.
   */
  private dropQueuedFrom(shard: string): void {
    if (this.client.queued === 0) return;
    let dropped = 0;
    const fromShard = (m: LeaseStreamResponse) => {
      if (!carriesTasks(m)) return false;
      const tasks = decoded(m).tasks?.tasks ?? [];
      if (leaseTokenShard(tasks[0]?.leaseToken ?? "") !== shard) return false;
      dropped += tasks.length;
      return true;
    };
    this.client.takeQueuedWhere(fromShard);
    this.outstanding += dropped;
    // never delivered: the tenant's lease rate, charged when their credits went out,
    // gets them back (they are charged again when the credits go out again)
    this.refundLeases(dropped);
  }

  /**
   * A shard stream that does not answer in time (a hung shard worker still holding its
   * connection; keepalive would take up to 40 s to notice): it is closed as failed, the
   * failure counts toward the shard's breaker, and it is reopened with backoff while
   * the shard is wanted. Its credits are free again, and whatever waited for its answer
   * (a client's withdrawal, the drain) goes on without it; the shard, if it wakes,
   * releases what the stream held.
   */
  private giveUp(leg: Leg, why: string): void {
    if (leg.closed) return;
    const err = new ClientError(
      LEASE_STREAM_PATH,
      Status.DEADLINE_EXCEEDED,
      `shard ${leg.conn.id}: ${why}`,
    );
    this.routing.logger.warn({ shard: leg.conn.id, why }, "shard lease stream gave no answer");
    this.onClosed(leg, err);
  }

  private reopenLater(shard: string): void {
    const attempt = (this.reopenAttempts.get(shard) ?? 0) + 1;
    this.reopenAttempts.set(shard, attempt);
    const delay = Math.min(MAX_REOPEN_DELAY_MS, 100 * 2 ** (attempt - 1));
    this.later(delay, () => {
      if (!this.wanted.includes(shard) || this.drainingNow) return;
      this.open(shard);
      this.rebalance();
    });
  }

  /** Runs `fn` after `ms` unless the session has ended by then; returns what cancels it. */
  private later(ms: number, fn: () => void): () => void {
    if (this.ended.signal.aborted) return () => undefined; // its timers are cleared already
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.ended.signal.aborted) fn();
    }, ms);
    this.timers.add(timer);
    return () => {
      clearTimeout(timer);
      this.timers.delete(timer);
    };
  }

  /**
   * Gives the credits no shard holds to the wanted shards furthest below their
   * share, drained shards first (`creditShares`). When a wanted shard is starved while
   * an idle one holds more than its share, the surplus is taken back from that one
   * (`recycleIdle`). No credits go out while a client's withdrawal is on its way.
   */
  private rebalance(): void {
    const n = this.wanted.length;
    // nothing more goes out once the session ended (its end took the credits back)
    if (this.ended.signal.aborted) return;
    if (n === 0 || this.drainingNow || this.halfClosed || this.withdrawals.length > 0) return;
    let held = 0;
    for (const leg of this.legs.values()) if (!leg.closed) held += leg.granted;
    let free = this.outstanding - held;
    const shares = creditShares(this.wanted, this.legs, this.outstanding, Date.now());
    const share = (i: number) => shares[i]!;
    // a stream whose Subscribed has not come may never answer (a hung shard), and its
    // credits cannot be taken back before it does: it gets no more than an idle one
    // until then (its full share once it answers, or the allowance once it counts as idle)
    const unanswered = n > 1 ? Math.max(1, idleAllowance(this.outstanding, n)) : Infinity;
    let starved = false;
    let throttled = false;
    const bucket = this.routing.limits.leaseBucket(this.f.identity.tenant);
    // no shard stream is given more than a stream may hold (the shard would end it):
    // after a withdrawal some shard answered late, the client's credits can add up to
    // more for a while, and the rest waits here until the shards use theirs
    const most = this.routing.config.maxStreamCredits;
    this.wanted.forEach((id, i) => {
      const leg = this.legs.get(id);
      if (!leg || leg.closed || leg.shardEnded) return;
      const deficit = Math.min(share(i), most) - leg.granted;
      const capped = leg.accepting ? deficit : Math.min(unanswered - leg.granted, deficit);
      let give = Math.min(free, capped);
      // the tenant's lease rate limit paces credits: a credit is a task it may receive
      if (give > 0 && bucket) {
        const allowed = bucket.takeUpTo(give);
        if (allowed < give) throttled = true;
        give = allowed;
      }
      if (give > 0) {
        if (leg.granted === 0) leg.creditedAt = Date.now();
        leg.granted += give;
        free -= give;
        leg.send({ credits: give });
      }
      if (deficit - Math.max(give, 0) > 0) starved = true;
    });
    if (throttled && bucket && !this.throttleWait) {
      this.throttleWait = true;
      this.later(Math.max(10, bucket.waitFor(1)), () => {
        this.throttleWait = false;
        this.rebalance();
      });
    }
    if (starved && !throttled) this.recycleIdle(share);
    if ((starved || turnsPending(this.wanted, this.legs, this.outstanding)) && !this.recheckWait) {
      // an idle stream may become recyclable, or a busy one idle, with no message to say so
      this.recheckWait = true;
      const soon = [...this.legs.values()].some((l) => l.demoted && !l.closed && l.granted > 0);
      const quiet = !starved && Date.now() - this.lastPushAt >= IDLE_TURNS_AFTER_MS;
      const delay = soon ? DEMOTED_RECHECK_MS : quiet ? IDLE_TURNS_RECHECK_MS : RECHECK_MS;
      this.later(delay, () => {
        this.recheckWait = false;
        this.rebalance();
      });
    }
  }

  /**
   * Takes credits back from idle streams holding more than their share, and from
   * streams of shards no longer wanted: on the stream (withdraw_credits), which leaves
   * what they pushed held and what is on its way delivered, its answer sharing them
   * out again. All of them, not the surplus over its share: tasks may reach the shard
   * while the withdrawal is on its way, and a shard told to keep its share would use
   * its credits on them and then start the share afresh, past what the client granted
   * (the share comes back with the answer, in `rebalance`). A shard that predates
   * withdraw_credits has its stream reopened instead, once nothing it pushed is in
   * flight and at most every RECYCLE_MIN_AGE_MS. A busy stream over its share is left
   * alone: it uses its credits, and gets fewer back as the client returns them.
   */
  private recycleIdle(share: (i: number) => number): void {
    const now = Date.now();
    let recycled = false;
    for (const leg of [...this.legs.values()]) {
      const i = this.wanted.indexOf(leg.conn.id);
      const keep = i < 0 ? 0 : share(i);
      const over = i < 0 ? leg.granted > 0 : leg.granted > keep && leg.idle(now);
      // until its Subscribed comes, whether it takes withdrawals is not known
      if (!over || leg.closed || !leg.accepting) continue;
      if (leg.withdrawable) {
        if (leg.withdrawing > 0) continue;
        leg.withdrawnIdle = i >= 0;
        void this.takeBack(leg);
        continue;
      }
      if (leg.inflight > 0) continue;
      // a young stream waits (the recheck in `rebalance` comes back to it)
      if (now - leg.openedAt < RECYCLE_MIN_AGE_MS) continue;
      this.recycle(leg);
      recycled = true;
    }
    // the recycled streams hold nothing now: share their credits out
    if (recycled) this.rebalance();
  }

  /**
   * Takes back the credits of every shard stream that may hold something, which also
   * says what each still holds (`takeBack`); resolves once all have answered or closed,
   * to whether each answered in time.
   * Whether a shard can be asked is known once its Subscribed has come, so that is
   * waited for (a stream that has neither answered nor holds credits has pushed
   * nothing: it is skipped). `unasked` gets each open stream whose shard predates
   * withdraw_credits.
   */
  private async askAll(unasked?: (leg: Leg) => void): Promise<boolean> {
    const answered = await Promise.all(
      [...this.legs.values()].map(async (leg) => {
        if (!leg.accepting && leg.granted === 0) return true;
        await leg.subscribed;
        if (leg.closed) return true;
        if (leg.withdrawable) return this.takeBack(leg);
        unasked?.(leg);
        return true;
      }),
    );
    return answered.every(Boolean);
  }

  /**
   * Takes back the credits `leg` has not used (withdraw_credits); resolves to whether
   * the shard answered in time (or the stream closed, taking its credits with it). A
   * late answer is acted on when it comes (`onMessage`): until then the count kept
   * here is not the shard's, and closing on it could release tasks the client holds.
   */
  private async takeBack(leg: Leg): Promise<boolean> {
    const answer = await this.watch.answerOf(leg, leg.withdraw(), "a withdrawal of credits");
    if (answer === undefined && !leg.closed) return false;
    // the shard's count of what the stream holds may let it close now
    if (!leg.wanted) this.closeIfDone(leg, true);
    this.endIfDrained();
    return true;
  }

  /** Closes a stream that holds no lease, and opens it again while its shard is wanted. */
  private recycle(leg: Leg): void {
    leg.close("recycled to hand its credits to another shard");
    this.refundUnused(leg);
    this.legs.delete(leg.conn.id);
    const again = this.wanted.includes(leg.conn.id) ? this.open(leg.conn.id) : undefined;
    // the same shard, still with nothing to push: it stays idle on its new stream, and
    // waits for its next turn as the old one would have
    if (again) {
      again.lastPushAt = leg.lastPushAt;
      again.creditedAt = leg.creditedAt;
    }
  }

  /**
   * Asks a shard, every PROBE_MS while its stream is open and counted as holding
   * leases, what the stream still holds, as long as the stream is unwanted or the
   * session drains (when that count decides when it closes): leases the client
   * settles by unary calls, or on another stream, never pass through the count kept
   * here, which would keep the stream open until the client's stream ends (or the
   * drain until its time is up). The answer resets the count, and lets the stream
   * close (or the drain end) when it holds nothing. One round of probes per leg.
   */
  private probe(leg: Leg): void {
    if (leg.probing) return;
    leg.probing = true;
    this.later(PROBE_MS, () => {
      leg.probing = false;
      if (leg.closed || (leg.wanted && !this.drainingNow) || !leg.withdrawable) return;
      if (leg.inflight > 0 && leg.withdrawing === 0) void this.takeBack(leg);
      this.probe(leg);
    });
  }

  /**
   * Closes the stream of a shard no longer wanted once nothing it pushed is held. A
   * shard that takes withdrawals is asked first (unless `checked`: it just answered),
   * as closing releases what the stream still holds and the count here may be short.
   */
  private closeIfDone(leg: Leg, checked = false): void {
    if (leg.wanted || leg.inflight > 0 || leg.closed) return;
    // credits it was left (a withdrawal sent while it was wanted) may be in use: they
    // are taken back first
    if (leg.withdrawable && (!checked || leg.granted > 0)) {
      if (leg.withdrawing === 0) void this.takeBack(leg);
      return;
    }
    leg.close("the shard no longer serves the subscribed queues");
    if (leg.granted > 0) {
      // a shard that predates withdraw_credits: its credits are free again
      this.refundUnused(leg);
      this.rebalance();
    }
    this.legs.delete(leg.conn.id);
  }

  /**
   * Tasks of `shards` were settled (their legs counted them off): a stream may close
   * now, or a move's source hand over its credits.
   */
  private afterSettled(shards: Iterable<string | undefined>): void {
    let recyclable = false;
    for (const shard of new Set(shards)) {
      const leg = shard === undefined ? undefined : this.legs.get(shard);
      if (!leg) continue;
      this.closeIfDone(leg);
      // a move's source holding credits can hand them over now (see `recycleIdle`)
      if (leg.inflight === 0 && leg.demoted && !leg.closed && leg.granted > 0) recyclable = true;
    }
    if (recyclable) this.rebalance();
  }
}
