import { randomUUID } from "node:crypto";
import { ServerError, Status } from "nice-grpc";
import type { Delivery, QueueRef } from "@codeq/engine";
import type {
  ExtendResult,
  ItemStatus,
  LeaseStreamRequest,
  LeaseStreamResponse,
} from "@codeq/proto";
import { CALLER_CODES, Channel, STREAM_DRAIN_SHARE } from "@codeq/server-kit";
import type { Identity } from "@codeq/server-kit";
import { HeldTokens } from "./held-tokens";
import { Kick } from "./kick";
import type { Reservation, Taker, Topic } from "./notifier";
import type { LeaseAsk } from "./lease-ask";
import type { QueueCore } from "./queue-core";
import { invalid, shuttingDown, toServerError } from "./status";
import { deliveryToWire, settlementsProblem } from "@codeq/wire";

const NONE = Promise.resolve([]);
/** After a lease the store failed, the stream's pump leases again after this, doubling to the max, ms. */
const STORE_RETRY_MS = 100;
const STORE_RETRY_MAX_MS = 2_000;
/**
 * Answers to a worker's requests queued and not taken, at most, before the session
 * reads its requests no further; it reads on once fewer than half are.
 */
const MAX_QUEUED_ANSWERS = 64;
/**
 * Pushes queued and not taken by the transport, at most, before the session leases
 * no more (nor takes a handoff): a worker that reads slowly is sent what its HTTP/2
 * window takes, and tasks do not pile up leased in the shard worker's memory, their
 * lease clock running, up to its credits times their size.
 */
const MAX_QUEUED_PUSHES = 2;
/**
 * Handoffs on their way (each one push to come) and pushes queued, at most, before a
 * stream takes no more handoffs: enqueues that arrive together hand off to a parked
 * stream side by side, but a burst of them cannot send a worker that reads slowly up to
 * its credits ahead of its reading, as MAX_QUEUED_PUSHES alone (counted only once a
 * push is queued) would let them.
 */
const MAX_PENDING_PUSHES = 8;
/**
 * The last error of tasks a shutdown took back from a stream: the shard worker's drain,
 * or its router's (InterruptLeaseStream), ran out of time. One text for both, so that a
 * task taken back by one shutdown after another counts every second time.
 */
export const SHUT_DOWN_WHILE_HELD = "a shutdown took the lease back while it was held";
const itself = (status: ItemStatus) => status;
const unextended = (status: ItemStatus): ExtendResult => ({ status, leaseDeadlineMs: 0 });

/**
 * Settles `items` (`settling`); when the store fails, every item is answered with that
 * status and its token added to `unsettled`. A bad request still fails (and ends the
 * stream).
 */
async function orFailed<T>(
  items: readonly { leaseToken: string }[],
  settling: Promise<T[]>,
  failed: (status: ItemStatus) => T,
  unsettled: string[],
): Promise<T[]> {
  try {
    return await settling;
  } catch (err) {
    const e = toServerError(err);
    if (CALLER_CODES.has(e.code)) throw e; // the request itself is wrong: the stream ends
    for (const i of items) unsettled.push(i.leaseToken);
    return items.map(() => failed({ code: e.code, message: e.details }));
  }
}

/**
 * One LeaseStream: the worker subscribes and grants credits; the session pushes
 * tasks the moment its queues have them (woken by the notifier, never by a timer),
 * never more than the credits granted; each request carrying acks, nacks or extends
 * is answered once. When the stream ends for any reason (the worker half-closes or
 * cancels, the connection breaks, the drain at shutdown is over) every lease it
 * still holds is released at once.
 *
 * At shutdown the stream drains: nothing more is pushed, and the worker may still
 * ack, nack and extend what it holds. The stream ends (UNAVAILABLE, "reconnect") as
 * soon as it holds nothing, or once STREAM_DRAIN_SHARE of the grace period is over.
 */
export class LeaseStreamSession implements Taker {
  private readonly id = randomUUID();
  private readonly out = new Channel<LeaseStreamResponse>();
  /** Answers queued and not yet taken. */
  private answersQueued = 0;
  /** Pushes queued and not yet taken (MAX_QUEUED_PUSHES). */
  private pushesQueued = 0;
  /** Handoffs that set credits aside and have not delivered yet (MAX_PENDING_PUSHES). */
  private handoffs = 0;
  /** Resumes the reader once answers were taken (or the session ended). */
  private readOn: (() => void) | undefined;
  private readonly ended = new AbortController();
  /** Fired to wake the pump when credits arrive or the stream ends (`end` fires it too). */
  private kick = new Kick();
  private ask: LeaseAsk | undefined;
  private topics: Topic[] = [];
  private credits = 0;
  /**
   * Credits set aside for leases in flight (handoffs, the pump's own): still granted,
   * they count against the cap, and what a lease does not use comes back.
   */
  private reserved = 0;
  /** A withdrawal waits for the leases in flight: nothing new is leased meanwhile. */
  private withdrawing = false;
  /** Wakes a withdrawal waiting for `reserved` to reach 0. */
  private reservationsBack: (() => void) | undefined;
  private rotation = 0;
  /** The pump's loop (`run`), and the session's last work once it ended (`finish`). */
  private pumping: Promise<void> = Promise.resolve();
  private finishing: Promise<void> | undefined;
  private maxBatch = 100;
  /**
   * The notifier version at which a lease last came back empty: more credits alone
   * do not make the queues non-empty, so the pump waits for a notification first.
   */
  private emptyAt: number | undefined;
  /** Tokens pushed by this stream and not yet settled through it. */
  private readonly held: HeldTokens;
  /** While the store is being asked which held tokens are still leased: that check. */
  private heldCheck: Promise<void> | undefined;
  /** Shutdown: nothing more is pushed; the stream ends once it holds nothing. */
  private draining = false;
  private drainTimer: NodeJS.Timeout | undefined;
  /** The drain's time ran out with leases still held: the worker did not fail them. */
  private drainRanOut = false;
  /** Lease tokens of the stream's nacks sent to the store and not answered yet. */
  private readonly nacking = new Set<string>();
  /** Messages of settlements sent to the store and not answered yet (a drain waits for them). */
  private settlingNow = 0;
  /** InterruptLeaseStream's release, once asked for: nothing more is pushed. */
  private interrupting: Promise<unknown> | undefined;
  /** The end's give-back of the pushes never written (`end`); `finish` waits for it. */
  private unsentBack: Promise<number> = Promise.resolve(0);

  constructor(
    private readonly core: QueueCore,
    private readonly identity: Identity,
    draining: AbortSignal,
    callSignal: AbortSignal,
  ) {
    // twice the credits a stream may have outstanding: a client that settles on the
    // stream keeps far fewer; one that settles by unary calls passes it now and then
    this.held = new HeldTokens(2 * core.config.maxStreamCredits);
    const onDrain = () => this.drain(Math.floor(core.config.graceMs * STREAM_DRAIN_SHARE));
    const onCancel = () => this.end();
    draining.addEventListener("abort", onDrain, { once: true });
    callSignal.addEventListener("abort", onCancel, { once: true });
    // before a drain already begun can end the session: its end removes them
    this.ended.signal.addEventListener("abort", () => {
      draining.removeEventListener("abort", onDrain);
      callSignal.removeEventListener("abort", onCancel);
    });
    if (draining.aborted) onDrain();
  }

  async *run(requests: AsyncIterable<LeaseStreamRequest>): AsyncGenerator<LeaseStreamResponse> {
    this.core.streamOpened(1);
    this.core.interrupters.set(this.id, () => this.interrupt());
    // the reader ends with the call; it may be parked on the worker's next message,
    // so the session never waits for it
    void this.read(requests);
    this.pumping = this.pump();
    try {
      for await (const message of this.out) {
        yield message;
        if (message.tasks) this.pushTaken();
        else if (message.settled || message.withdrawn) this.answerTaken();
      }
    } finally {
      this.end();
      await this.finish();
      this.core.interrupters.delete(this.id);
      this.core.streamOpened(-1);
    }
  }

  /**
   * Once the session has ended: gives back the pushes never written and releases what
   * the stream holds. Run as the call ends, and as soon as a drain runs out: a worker
   * that does not read keeps the call waiting to write until the server's grace period
   * is over, when the store is closing.
   */
  private finish(): Promise<void> {
    this.finishing ??= (async () => {
      await this.pumping;
      // an interruption still releasing: what it fails to release is held again first
      await this.interrupting?.catch(() => undefined);
      await this.unsentBack;
      await this.releaseHeld();
    })();
    return this.finishing;
  }

  /** Queues an answer to one of the worker's requests. */
  private answer(res: LeaseStreamResponse): void {
    this.answersQueued++;
    this.out.push(res);
  }

  /** An answer queued by `answer` was taken by the transport. */
  private answerTaken(): void {
    this.answersQueued--;
    if (this.answersQueued < MAX_QUEUED_ANSWERS / 2) {
      this.readOn?.();
      this.readOn = undefined;
    }
  }

  /** A push queued by `push` was taken by the transport: the pump may lease again. */
  private pushTaken(): void {
    if (this.pushesQueued-- === MAX_QUEUED_PUSHES) this.kick.fire();
  }

  /** The transport has not taken the pushes before: nothing more is leased meanwhile. */
  private get backedUp(): boolean {
    return this.pushesQueued >= MAX_QUEUED_PUSHES;
  }

  /**
   * Stops the session; with an error, the worker receives it as the stream's status.
   * Pushes not written yet are written no more, however the stream ends (the worker
   * half-closed or cancelled, a bad request, the drain ran out): they go back
   * uncounted rather than be written after the end and released as attempts.
   */
  private end(error?: ServerError): void {
    if (this.ended.signal.aborted) return;
    clearTimeout(this.drainTimer);
    this.ended.abort();
    this.readOn?.(); // the reader stops, not left waiting
    this.kick.fire();
    this.reservationsBack?.();
    // taken out before the channel closes (the take runs before giveBackUnsent's first await)
    this.unsentBack = this.giveBackUnsent();
    if (error) this.out.fail(error);
    else this.out.close();
  }

  /**
   * Stops pushing (the pump stops, handoffs are refused) and ends the stream once it
   * holds nothing, or after `ms`. Leases settled by unary calls are looked up first, so
   * they do not keep the stream open.
   */
  private drain(ms: number): void {
    if (this.draining || this.ended.signal.aborted) return;
    this.draining = true;
    this.kick.fire();
    this.drainTimer = setTimeout(() => {
      this.drainRanOut = true;
      this.end(shuttingDown());
      void this.finish();
    }, ms);
    this.endIfDrained();
    if (this.held.size > 0)
      void (this.heldCheck ?? this.checkHeld()).then(() => this.endIfDrained());
  }

  /** Ended, or draining: nothing more is pushed (what a lease got is given back). */
  private get stopped(): boolean {
    return this.ended.signal.aborted || this.draining || this.interrupting !== undefined;
  }

  /**
   * While draining: ends the stream once it holds no lease, no handoff is on its way and
   * every settlement is answered (a check of what it holds may find an ack applied
   * before its answer is queued).
   */
  private endIfDrained(): void {
    if (this.draining && this.held.size === 0 && this.reserved === 0 && this.settlingNow === 0)
      this.end(shuttingDown());
  }

  private async read(requests: AsyncIterable<LeaseStreamRequest>): Promise<void> {
    try {
      for await (const req of requests) {
        if (this.ended.signal.aborted) return;
        await this.handle(req);
        // a worker that sends without reading its answers is read no further (HTTP/2
        // flow control then holds it back), rather than its answers piling up here
        while (this.answersQueued >= MAX_QUEUED_ANSWERS && !this.ended.signal.aborted)
          await new Promise<void>((resolve) => (this.readOn = resolve));
      }
      // the worker half-closed: it wants no more tasks (what is queued for it goes back)
      this.end();
    } catch (err) {
      this.end(toServerError(err));
    }
  }

  private async handle(req: LeaseStreamRequest): Promise<void> {
    if (!this.ask) {
      if (!req.subscribe) throw invalid("the first LeaseStream message must carry subscribe");
      const s = req.subscribe;
      this.ask = this.core.leaseAsk(this.identity, s.commands, s.allTenants, s.leaseDurationMs);
      this.topics = this.core.topics(this.identity, this.ask);
      // unset: 100, or the worker's own limit if that is lower
      this.maxBatch = s.maxBatch || Math.min(100, this.core.config.maxBatch);
      if (this.maxBatch > this.core.config.maxBatch)
        throw invalid(`subscribe.max_batch must be at most ${this.core.config.maxBatch}`);
      this.out.push({
        subscribed: { streamId: this.id, leaseDurationMs: this.ask.leaseMs, withdrawCredits: true },
      });
    } else if (req.subscribe) {
      throw invalid("subscribe is allowed only in the first LeaseStream message");
    }
    if (req.withdrawCredits) await this.withdraw(req.requestId);
    if (req.credits > 0) {
      if (this.credits + this.reserved + req.credits > this.core.config.maxStreamCredits) {
        throw new ServerError(
          Status.RESOURCE_EXHAUSTED,
          `credits outstanding may not exceed ${this.core.config.maxStreamCredits}`,
        );
      }
      this.credits += req.credits;
      this.kick.fire();
    }
    const settlements = req.acks.length + req.nacks.length + req.extends.length;
    if (settlements === 0) return;
    if (settlements > this.core.config.maxBatch)
      throw invalid(`at most ${this.core.config.maxBatch} acks, nacks and extends per message`);
    // checked whole before any is applied: a bad item ends the stream with none of the
    // message's settlements made, not with the others made and unanswered
    const problem = settlementsProblem(req);
    if (problem) throw invalid(problem);
    // a failure of the store fails those items (each answered with it, as a unary call
    // would be), not the stream and every lease it holds; a bad request ends the stream
    const unsettled: string[] = [];
    for (const n of req.nacks) this.nacking.add(n.leaseToken);
    this.settlingNow++;
    const settling = Promise.all([
      req.acks.length
        ? orFailed(req.acks, this.core.ack(this.identity, req.acks), itself, unsettled)
        : NONE,
      req.nacks.length
        ? orFailed(req.nacks, this.core.nack(this.identity, req.nacks), itself, unsettled)
        : NONE,
      req.extends.length
        ? orFailed(req.extends, this.core.extend(this.identity, req.extends), unextended, unsettled)
        : NONE,
    ]);
    try {
      const [acks, nacks, extendsOut] = await (req.nacks.length === 0
        ? settling
        : settling.finally(() => {
            for (const n of req.nacks) this.nacking.delete(n.leaseToken);
          }));
      // settled (or no longer ours to release): stop tracking; what failed is still held
      for (const item of [...req.acks, ...req.nacks])
        if (unsettled.length === 0 || !unsettled.includes(item.leaseToken))
          this.held.delete(item.leaseToken);
      this.answer({ settled: { requestId: req.requestId, acks, nacks, extends: extendsOut } });
    } finally {
      this.settlingNow--;
    }
    this.endIfDrained();
  }

  /**
   * Takes back every credit not yet used and answers how many, and how many leases the
   * stream still holds. Leases in flight (a handoff, the pump's) are waited for first:
   * the credits they do not use come back and are taken too, and what they did lease
   * is pushed before the answer.
   */
  private async withdraw(requestId: number): Promise<void> {
    this.withdrawing = true;
    try {
      while (this.reserved > 0 && !this.ended.signal.aborted)
        await new Promise<void>((resolve) => (this.reservationsBack = resolve));
    } finally {
      this.withdrawing = false;
      this.reservationsBack = undefined;
    }
    const credits = this.credits;
    this.credits = 0;
    // nothing is pushed now: what the stream holds, less what was settled elsewhere
    // (a check already on its way may have read the store before some of it)
    while (this.heldCheck) await this.heldCheck;
    if (this.held.size > 0) await this.checkHeld();
    this.answer({ withdrawn: { requestId, credits, held: this.held.size } });
    this.endIfDrained(); // the check may have found it holds nothing
  }

  /** Credits set aside for a lease come back: `used` of them went to pushed tasks. */
  private unreserve(reserved: number, used: number): void {
    this.reserved -= reserved;
    this.credits += reserved - used;
    if (this.reserved === 0) this.reservationsBack?.();
  }

  /** Leases while there are credits; parks on the notifier when the queues are empty. */
  private async pump(): Promise<void> {
    const signal = this.ended.signal;
    let failures = 0;
    /** The queue a notification woke the pump for: leased first. */
    let woken: QueueRef | undefined;
    while (!this.stopped) {
      if (!this.ask || this.credits === 0 || this.withdrawing || this.backedUp) {
        await this.kick.wait();
        this.kick = new Kick();
        continue;
      }
      try {
        const seen = this.core.notifier.version(this.topics);
        if (this.emptyAt === seen) {
          woken = await this.core.notifier.wait(this.topics, seen, this.kick, Infinity, this);
          if (this.kick.aborted && !signal.aborted) this.kick = new Kick();
          continue;
        }
        const want = Math.min(this.credits, this.maxBatch);
        this.credits -= want;
        this.reserved += want;
        let got: readonly Delivery[] = [];
        try {
          got = await this.core.lease(this.identity, this.ask, want, this.rotation++, woken);
          woken = undefined;
          failures = 0;
        } finally {
          this.unreserve(want, this.stopped ? 0 : got.length);
        }
        if (this.stopped) {
          // never pushed
          await this.core.giveBack(got.map((d) => d.token));
          this.endIfDrained();
          return;
        }
        if (got.length > 0) {
          this.emptyAt = undefined;
          this.push(got);
          continue;
        }
        this.emptyAt = seen;
      } catch (err) {
        if (this.stopped) {
          // nothing more to push: a draining stream still ends as its drain says
          this.endIfDrained();
          return;
        }
        const e = toServerError(err);
        if (CALLER_CODES.has(e.code)) {
          this.end(e);
          return;
        }
        // the store failed (it restarts, the network blips): not the stream, and every
        // lease it holds with it (its acks are answered with the failure meanwhile); it
        // leases again after a pause, or when credits come
        await this.pause(Math.min(STORE_RETRY_MAX_MS, STORE_RETRY_MS * 2 ** failures++));
      }
    }
  }

  /** Waits `ms`, or less if the pump is kicked (credits, a withdrawal's end, the stream's). */
  private async pause(ms: number): Promise<void> {
    const timer = setTimeout(() => this.kick.fire(), ms);
    await this.kick.wait();
    clearTimeout(timer);
    if (!this.ended.signal.aborted) this.kick = new Kick();
  }

  /**
   * What a notification may count on this stream for: none while it withdraws its
   * credits or stops (woken, it would lease nothing, and the waiters behind it would
   * sleep through the notification).
   */
  get available(): number {
    if (this.withdrawing || this.stopped || this.backedUp) return 0;
    // what it leases before it backs up, not all its credits: a notification counted on
    // more would leave streams behind it asleep with tasks ready
    return Math.min(this.credits, this.maxBatch * (MAX_QUEUED_PUSHES - this.pushesQueued));
  }

  /** Sets credits aside for an enqueue that leases for this stream while it is parked. */
  reserve(): Reservation | undefined {
    const max = Math.min(this.credits, this.maxBatch);
    if (!this.ask || max <= 0 || this.stopped || this.withdrawing || this.backedUp)
      return undefined;
    if (this.pushesQueued + this.handoffs >= MAX_PENDING_PUSHES) return undefined;
    this.handoffs++;
    this.credits -= max;
    this.reserved += max;
    return { max, leaseMs: this.ask.leaseMs, maxBytes: this.core.config.maxResponseBytes };
  }

  /** What that enqueue leased for this stream; a stream that ended meanwhile gives it back. */
  deliver(deliveries: readonly Delivery[], reserved: number): void {
    const before = this.credits;
    const pushing = !this.stopped;
    this.handoffs--;
    this.unreserve(reserved, pushing ? deliveries.length : 0);
    // credits back to a stream that had none: its pump waits for them, or stayed parked
    // while announcements passed it by (the kick has it look at the queue again)
    if (before === 0 && this.credits > 0) this.kick.fire();
    if (!pushing) {
      // never pushed; a give-back the store fails is tried again (QueueCore.giveBack)
      if (deliveries.length > 0)
        this.core.giveBack(deliveries.map((d) => d.token)).catch(() => undefined);
      this.endIfDrained();
      return;
    }
    if (deliveries.length === 0) return;
    this.push(deliveries);
  }

  private push(deliveries: readonly Delivery[]): void {
    const dropped = this.held.add(deliveries.map((d) => d.token));
    if (dropped > 0) this.core.leasesForgotten(dropped);
    if (this.held.checkDue && !this.heldCheck) void this.checkHeld();
    this.pushesQueued++;
    this.out.push({ tasks: { tasks: deliveries.map(deliveryToWire) } });
  }

  /**
   * Forgets the held tokens whose leases were settled elsewhere (by unary calls) or
   * taken back; when more than the limit are still leased, the oldest of those too.
   */
  private checkHeld(): Promise<void> {
    const check = this.runHeldCheck();
    this.heldCheck = check;
    void check.finally(() => {
      if (this.heldCheck === check) this.heldCheck = undefined;
    });
    return check;
  }

  private async runHeldCheck(): Promise<void> {
    const tokens = this.held.all();
    try {
      const forgotten = this.held.checked(tokens, await this.core.stillLeased(tokens));
      if (forgotten > 0) this.core.leasesForgotten(forgotten);
    } catch {
      // the store is unreachable: nothing is known, nothing forgotten; add's cap bounds the count
      this.held.deferCheck();
    }
  }

  /**
   * Pushes the call never took to write (the worker read slowly, and the stream ended):
   * they never reached the worker, so they are given back with no attempt counted, as
   * a handoff that comes after the stream ended is, not released as what it holds.
   * A push the call took may have reached the worker, and is released with the rest.
   */
  private async giveBackUnsent(): Promise<number> {
    const tokens: string[] = [];
    // answers stay: the call may still write them (a drain that ran out, the worker reading)
    for (const message of this.out.takeQueuedWhere((m) => m.tasks !== undefined))
      for (const t of message.tasks?.tasks ?? [])
        if (this.held.delete(t.leaseToken)) tokens.push(t.leaseToken);
    if (tokens.length === 0) return 0;
    // a give-back the store fails is tried again (QueueCore.giveBack)
    await this.core.giveBack(tokens).catch(() => undefined);
    return tokens.length;
  }

  /**
   * Releases what the stream still holds as it ends: ready again at once, the attempt
   * counted; not counted when the drain at shutdown ran out (the worker may still be
   * running them well: a restart must not dead-letter a task on its last attempt).
   */
  private async releaseHeld(): Promise<void> {
    const tokens = this.held.takeAll();
    if (tokens.length === 0) return;
    try {
      if (this.drainRanOut) await this.releaseInterrupted(tokens);
      else await this.core.releaseClosed(tokens, "lease stream closed");
    } catch {
      // the store is unreachable: they are released once it answers (QueueCore.releaseClosed)
    }
  }

  /**
   * Releases `tokens` a shutdown takes back, uncounted; a nack on its way to the store
   * is the worker's own failure, counted as it would be.
   */
  private async releaseInterrupted(tokens: readonly string[]): Promise<void> {
    const [nacked, interrupted] = this.byNacking(tokens);
    await Promise.allSettled([
      this.core.releaseClosed(interrupted, SHUT_DOWN_WHILE_HELD, false),
      this.core.releaseClosed(nacked, "lease stream closed"),
    ]);
  }

  /** `tokens` split: those whose nack is on its way to the store, and the rest. */
  private byNacking(tokens: readonly string[]): [string[], string[]] {
    const nacked: string[] = [];
    const rest: string[] = [];
    for (const t of tokens) (this.nacking.has(t) ? nacked : rest).push(t);
    return [nacked, rest];
  }

  /**
   * Its router's drain ran out (InterruptLeaseStream): nothing more is pushed, and what
   * the stream holds is released uncounted, as the shard worker's own drain would; the
   * stream stays open for the router to close. A lease whose nack is on its way to the
   * store stays held: the nack settles it as the worker meant. Answers how many leases
   * were released; a store failure fails the call, and they are held again (released,
   * counted, when the stream closes: it waits for this first).
   */
  private interrupt(): Promise<number> {
    const run = async () => {
      this.kick.fire();
      // pushes not written yet are written no more, and go back uncounted (retried
      // until the store takes them, whatever becomes of the release below)
      const unsent = await this.giveBackUnsent();
      const [nacked, interrupted] = this.byNacking(this.held.takeAll());
      this.held.add(nacked);
      try {
        await this.core.release(interrupted, SHUT_DOWN_WHILE_HELD, false);
      } catch (err) {
        this.held.add(interrupted);
        throw err;
      }
      return unsent + interrupted.length;
    };
    // one at a time: a second waits for the first (failed or not)
    const released = (this.interrupting ?? Promise.resolve()).catch(() => undefined).then(run);
    this.interrupting = released;
    return released;
  }
}
