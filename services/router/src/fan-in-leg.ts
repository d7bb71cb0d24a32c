import { ClientError, ServerError, Status } from "nice-grpc";
import { type CreditsWithdrawn as Withdrawn, LeaseStreamRequest, SettleResult } from "@codeq/proto";
import { Channel } from "@codeq/server-kit";
import { forwardedAcks, settledItems } from "./stream-acks";
import type { ShardConn } from "./shard-pool";

/**
 * A shard stream holding credits that has pushed nothing for this long has nothing to
 * deliver (a shard pushes the moment it has tasks and credits).
 */
export const IDLE_MS = 250;
/**
 * A shard that still holds subscribed queues but no longer gets their new tasks (a
 * move's source) is idle once it has pushed nothing for this long: it only has what
 * it held, so a pause means it is done, and its credits are needed where the new
 * tasks now go (the target's first tasks wait for them).
 */
export const DEMOTED_IDLE_MS = 5;

/** The method a shard stream's errors name (as a failed call's would). */
export const LEASE_STREAM_PATH = "/codeq.v1.QueueService/LeaseStream";

/** One per-shard LeaseStream of a client's stream through the router (FanInSession). */
export class Leg {
  /** Sent as given: the shard client's serializer makes the one complete copy it encodes. */
  readonly requests = new Channel<Partial<LeaseStreamRequest>>();
  readonly abort = new AbortController();
  /** Credits granted to the shard and not yet used by a pushed task. */
  granted = 0;
  /**
   * Tasks pushed to the client through this leg and not yet acked or nacked on it, as
   * counted here; reset from the shard's own count whenever it answers a withdrawal.
   */
  inflight = 0;
  /** The shard still serves a subscribed queue (false: drain what is in flight, then close). */
  wanted = true;
  /**
   * Wanted, but no longer the current shard of any subscribed queue (a move's
   * source): new tasks go elsewhere, so it is idle after DEMOTED_IDLE_MS, not IDLE_MS.
   */
  demoted = false;
  closed = false;
  /**
   * The shard ended the stream (its status came), though what it pushed before may not
   * have been read yet: the shard released what the stream held, so none of it is
   * passed on (FanInSession.onShardEnded).
   */
  shardEnded = false;
  /** The shard's Subscribed has come. */
  accepting = false;
  /** The shard honours withdraw_credits (its Subscribed said so). */
  withdrawable = false;
  /** The stream's id, as the shard's Subscribed gave it (InterruptLeaseStream). */
  streamId = "";
  /** Which of the shard's channels the stream is on. */
  channel = 0;
  /** Resolves once the shard's Subscribed has come (or the stream closed before). */
  readonly subscribed: Promise<void>;
  private onSubscribed!: () => void;
  /** Withdrawals sent and not yet answered: their credits are not known until then. */
  withdrawing = 0;
  readonly openedAt = Date.now();
  /**
   * When the shard last pushed tasks on this stream (at first, when it opened). A stream
   * recycled while idle carries over its predecessor's, which is before it opened.
   */
  lastPushAt = this.openedAt;
  /**
   * Its reading waits for the client to take what is queued for it
   * (`ClientSide.backedUp`): what the shard sends meanwhile is not read.
   */
  held = false;
  /** When its reading last went on after it was `held`: what the shard sent is only now read. */
  readOnAt = 0;
  /** When it last got credits while it held none. */
  creditedAt = 0;
  /** Its credits were taken back because it was idle: it stays idle until it pushes. */
  withdrawnIdle = false;
  /** A round of `FanInSession.probe`s is scheduled. */
  probing = false;
  /**
   * Settlements sent on the stream, by request id, in the order sent: each resolves to
   * the shard's SettleResult, as bytes.
   */
  private readonly pending = new Map<
    number,
    { resolve: (settled: Uint8Array) => void; reject: (e: unknown) => void; sentAt: number }
  >();
  /** A watch of the settlements' answers is scheduled (ShardWatch.watchSettlements). */
  watched = false;
  /** Withdrawals sent on the stream, by request id: each resolves to the shard's answer. */
  private readonly withdrawals = new Map<number, (answer: Withdrawn | undefined) => void>();

  constructor(
    readonly conn: ShardConn,
    private readonly nextId: () => number,
    /** Called once a settlement is sent, to watch for its answer. */
    private readonly onSettlementSent: (leg: Leg) => void,
  ) {
    this.subscribed = new Promise((resolve) => (this.onSubscribed = resolve));
  }

  /** The shard accepted the subscription; `withdrawable` as it says. */
  accepted(withdrawable: boolean, streamId: string): void {
    this.accepting = true;
    this.withdrawable = withdrawable;
    this.streamId = streamId;
    this.onSubscribed();
  }

  send(req: Partial<LeaseStreamRequest>): void {
    this.requests.push(req);
  }

  /**
   * Holds credits, yet the shard has pushed nothing for a while: its queues are empty.
   * A stream whose credits were taken back because it was idle (withdrawn, or the
   * stream reopened) stays idle until it pushes, even before it holds credits again.
   * One `held` for a slow client is not: what it pushed is not read yet (taking its
   * credits back would only churn; closing a stream whose shard predates withdrawals
   * would release those pushes as attempts).
   */
  idle(now: number): boolean {
    if (this.held) return false;
    const knownIdle = this.withdrawnIdle || this.lastPushAt < this.openedAt;
    // a demoted shard is quiet for so short a time that it counts from its latest
    // credits too: one that just got credits has not had the time to use them (but one
    // known idle had its time before)
    const since =
      this.demoted && !knownIdle ? Math.max(this.lastPushAt, this.creditedAt) : this.lastPushAt;
    return (this.granted > 0 || knownIdle) && now - since >= this.quietMs;
  }

  /** How long the shard pushes nothing before it counts as idle. */
  get quietMs(): number {
    return this.demoted ? DEMOTED_IDLE_MS : IDLE_MS;
  }

  /** Settles on the shard's own stream, so the shard stops tracking those leases too. */
  settle(req: Partial<LeaseStreamRequest>): Promise<SettleResult> {
    return this.request((requestId) => ({ ...req, requestId })).then((b) => SettleResult.decode(b));
  }

  /** Settles a client's acks (StreamAcks.acks) on the shard's stream as they came; the answer as bytes. */
  settleAcks(acks: Uint8Array): Promise<Uint8Array> {
    return this.request((requestId) => forwardedAcks(requestId, acks));
  }

  /** Sends `message` under a new request id; resolves to the shard's answer to it, as bytes. */
  private request(
    message: (requestId: number) => Partial<LeaseStreamRequest>,
  ): Promise<Uint8Array> {
    // a stream closed meanwhile (by a rebalance in the same turn, say) answers nothing
    if (this.closed) return Promise.reject(this.closedError("closed before the request was sent"));
    const requestId = this.nextId();
    return new Promise((resolve, reject) => {
      this.pending.set(requestId, { resolve, reject, sentAt: performance.now() });
      this.send(message(requestId));
      this.onSettlementSent(this);
    });
  }

  /** When the oldest settlement still waiting for its answer was sent (`performance.now()`). */
  oldestSettlement(): number | undefined {
    for (const p of this.pending.values()) return p.sentAt;
    return undefined;
  }

  /**
   * Stops waiting for the answers to settlements sent `ms` ago or earlier: they fail
   * with DEADLINE_EXCEEDED, as a failure of the shard's (its breaker counts it). A late
   * answer is ignored: its leases stay counted until a withdrawal's answer sets
   * `inflight` from the shard's own count. (Counting them off then would count them
   * twice once the client sends them again, as it is told to, and they are answered
   * again; a count too high only keeps a stream open longer.)
   */
  expire(ms: number): void {
    const before = performance.now() - ms;
    const err = new ClientError(
      LEASE_STREAM_PATH,
      Status.DEADLINE_EXCEEDED,
      `no answer to the settlement within ${ms} ms; it may still be applied: send it again`,
    );
    for (const [requestId, p] of this.pending) {
      if (p.sentAt > before) break;
      this.pending.delete(requestId);
      p.reject(err);
    }
  }

  /**
   * The error of a settlement whose stream closed before answering: a failure of the
   * shard's (its breaker counts it) when the stream broke or was given up.
   */
  private closedError(reason: string, shardFailed = false): ServerError | ClientError {
    const details = `its stream closed before answering (${reason}); the lease may still be held, retry the settlement`;
    return shardFailed
      ? new ClientError(LEASE_STREAM_PATH, Status.UNAVAILABLE, details)
      : new ServerError(Status.UNAVAILABLE, `shard ${this.conn.id}: ${details}`);
  }

  /**
   * Takes back the credits the shard has not used; resolves to the shard's answer.
   * Until the answer, `granted` still counts them (pushes meanwhile use them); the
   * answer takes what came back off it, and sets `inflight` to what
   * the shard says the stream holds: the count kept here can drift (an ack sent twice,
   * a token of an earlier stream, an ack by a unary call), the shard's cannot. A stream
   * that closes first took its credits with it (undefined).
   */
  withdraw(): Promise<Withdrawn | undefined> {
    if (this.closed) return Promise.resolve(undefined);
    const requestId = this.nextId();
    this.withdrawing++;
    return new Promise((resolve) => {
      this.withdrawals.set(requestId, (answer) => {
        this.withdrawing--;
        if (answer) {
          this.granted = Math.max(0, this.granted - answer.credits);
          this.inflight = answer.held;
        }
        resolve(answer);
      });
      this.send({ withdrawCredits: true, requestId });
    });
  }

  withdrawn(answer: Withdrawn): void {
    this.withdrawals.get(answer.requestId)?.(answer);
    this.withdrawals.delete(answer.requestId);
  }

  /**
   * The shard's answer to settlements sent on the stream. What it settled is taken off
   * `inflight` here, as the answer arrives: a withdrawal answered after it counts the
   * stream's leases without those, so taking them off later would take them off twice.
   */
  settled(requestId: number, settled: Uint8Array): void {
    const pending = this.pending.get(requestId);
    if (!pending) return;
    this.pending.delete(requestId);
    this.inflight = Math.max(0, this.inflight - settledItems(settled));
    pending.resolve(settled);
  }

  /** Closes the stream; `shardFailed`: it broke, or was given up (see `closedError`). */
  close(reason: string, shardFailed = false): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    this.requests.close();
    const err = this.closedError(reason, shardFailed);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (const w of this.withdrawals.values()) w(undefined);
    this.withdrawals.clear();
    this.onSubscribed();
  }
}
