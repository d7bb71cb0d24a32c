import { ClientError, Status, type Client } from "nice-grpc";
import { internal } from "@codeq/proto";
import { Channel } from "@codeq/server-kit";
import type { LeaseResponse } from "@codeq/proto";
import { forwardedRelease, readForwardAnswer, type ForwardAnswer } from "./passthrough";
import { type Raw } from "./wire-bytes";
import { FencedError } from "./routing";
import { SeqWindow } from "./seq-window";

/**
 * Whose call it is, as a ForwardRequest states it: what the identity metadata of
 * a forwarded QueueService call would say.
 */
export interface Caller {
  readonly tenant: string;
  /** Percent-encoded, as in x-codeq-principal. */
  readonly principal: string;
  /** Comma-separated, as in x-codeq-roles. */
  readonly roles: string;
  /** Comma-separated, as in x-codeq-commands; undefined for every command, empty for none. */
  readonly commands: string | undefined;
  /** The shard map version the router routed by. */
  readonly mapVersion: number;
}

/**
 * The router's side of codeq.internal.v1.ShardService.Forward: its request is sent
 * as bytes the router put together (the client's call and a header stating whose
 * it is), its answer read without decoding the call's results.
 */
export const forwardService = {
  forward: {
    path: `/${internal.ShardServiceDefinition.fullName}/Forward`,
    requestStream: true,
    responseStream: true,
    requestSerialize: (bytes: Uint8Array) => bytes,
    requestDeserialize: (bytes: Uint8Array) => bytes,
    responseSerialize: (): Uint8Array => {
      throw new Error("the router never answers Forward");
    },
    responseDeserialize: readForwardAnswer,
    options: {},
  },
} as const;

export type ForwardClient = Client<typeof forwardService>;

interface Pending {
  readonly sentAt: number;
  /** The call's bytes until they are written to the stream. */
  bytes: Uint8Array | undefined;
  /** A lease's caller: what the lease takes after the lane gave up on it is given back. */
  readonly leaseFor?: Caller;
  resolve(answer: ForwardAnswer): void;
  reject(err: unknown): void;
}

/** One Forward stream: the calls written to it and not answered yet. */
interface Stream {
  /** The seqs of calls to write, in order (their bytes are on their Pending). */
  readonly requests: Channel<number>;
  readonly abort: AbortController;
  readonly pending: SeqWindow<Pending>;
  /** Bytes of the calls waiting to be written (the shard reads slowly, or not at all). */
  unwritten: number;
  /** Leases timed out here but maybe taken there, by seq: given back when answered. */
  readonly late: Map<number, Caller>;
}

/** Timed-out leases remembered per stream, at most (the oldest are forgotten). */
const MAX_LATE = 10_000;

/**
 * Bytes of calls one stream holds waiting to be written, at most: with the count
 * (`maxPending`), what bounds the router's memory while a shard worker does not read
 * (a store stall): 4,096 calls of up to 256 KB each would be 1 GiB.
 */
export const MAX_UNWRITTEN_BYTES = 64 * 1024 * 1024;

/**
 * A call's header: its ForwardRequest without the call's fields, encoded alone and put
 * after the call's bytes. Written out field by field: built with object spreads
 * (`{ ...noCall, seq, ...caller }`), each header kept about 2 KB alive across the next
 * scavenge, 1 MB per scavenge at 500 calls a second (docs/performance.md, "The
 * router's added latency, per call").
 */
function forwardHeader(seq: number, caller: Caller): Uint8Array {
  return internal.ForwardRequest.encode({
    enqueue: undefined,
    ack: undefined,
    nack: undefined,
    extend: undefined,
    lease: undefined,
    release: undefined,
    seq,
    tenant: caller.tenant,
    principal: caller.principal,
    roles: caller.roles,
    commands: caller.commands,
    mapVersion: caller.mapVersion,
  }).finish();
}

/** The lease tokens of a Lease answer. */
export function tokensOf(leased: Raw<LeaseResponse>): string[] {
  return leased.value.tasks.map((t) => t.leaseToken);
}

/** How often sent calls are checked against the lane's deadline, at most, ms. */
const SWEEP_MS = 250;

/** How a shard worker refuses a stream that no retry of the same call would change. */
const REFUSALS = new Set([Status.UNAUTHENTICATED, Status.PERMISSION_DENIED]);

/** The shard worker has no Forward (UNIMPLEMENTED): nothing was sent; make the call instead. */
export class LaneMissing extends Error {}

/** The lane refused the call before sending it (closed, or too many calls waiting): UNAVAILABLE. */
export class LaneRefused extends ClientError {}

/**
 * One Forward lane to a shard worker, carrying every caller's enqueue batches and
 * settlements for it: a call costs a message on an open HTTP/2 stream instead of
 * a call of its own (stream setup, headers and trailers on both sides), which on
 * the router and on the shard worker is most of what forwarding it costs.
 *
 * A stream opens with the first call and again after it ended. A call is answered
 * by its seq. When the shard worker drains it says so; the lane then sends on a
 * new stream and half-closes the old one, whose calls are all answered. When a
 * stream breaks (the shard worker died, the network dropped), its calls not yet
 * answered fail with UNAVAILABLE: they may or may not have been applied, and the
 * caller may retry them (an enqueue with its idempotency keys), as after any
 * failed call. A call unanswered after `timeoutMs` fails with DEADLINE_EXCEEDED
 * and, if it is still waiting in the router, is never sent. A shard worker
 * without Forward (older than the router) answers UNIMPLEMENTED before reading
 * anything: the lane is then `unsupported`, and its calls fail with LaneMissing
 * for the router to make them as QueueService calls.
 */
export class ForwardLane {
  private nextSeq = 1;
  private current: Stream | undefined;
  private readonly streams = new Set<Stream>();
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;
  /** The shard worker does not serve Forward. */
  unsupported = false;

  constructor(
    private readonly shard: string,
    private readonly client: ForwardClient,
    private readonly timeoutMs: number,
    /**
     * Calls one stream holds unanswered, at most. Past it a call is refused at once
     * (UNAVAILABLE, nothing sent): the shard worker is not keeping up, and a router
     * queue that grew without bound would only deliver calls long after their callers
     * gave up.
     */
    private readonly maxPending = 4096,
    /**
     * Told how many leases a give-back did not return, and why (the stream broke, the
     * call timed out, the lane was closed): those leases expire and their tasks are
     * delivered again then, later than a give-back would have.
     */
    private readonly onGiveBackLost: (leases: number, err: unknown) => void = () => undefined,
    private readonly maxUnwrittenBytes = MAX_UNWRITTEN_BYTES,
  ) {}

  /**
   * Sends `call` (the fields of a ForwardRequest that carry it) on behalf of
   * `caller`. Resolves with the shard's answer; rejects with FencedError when the
   * shard refused an enqueue by fencing, with a ClientError (the status the call
   * would have ended with) when it refused it otherwise.
   */
  send(
    call: Uint8Array,
    caller: Caller,
    lease = false,
    signal?: AbortSignal,
  ): Promise<ForwardAnswer> {
    if (this.closed) return Promise.reject(this.refusal("its connection is closed"));
    // nothing would settle a call whose caller is gone before it is registered
    if (signal?.aborted)
      return Promise.reject(this.failure(Status.CANCELLED, "the caller left before the call"));
    const stream = (this.current ??= this.start());
    if (stream.pending.size >= this.maxPending)
      return Promise.reject(
        this.refusal(
          `it is not keeping up: ${this.maxPending} calls are waiting for it; retry after a backoff`,
        ),
      );
    const seq = this.nextSeq;
    const bytes = Buffer.concat([call, forwardHeader(seq, caller)]);
    if (stream.unwritten + bytes.length > this.maxUnwrittenBytes)
      return Promise.reject(
        this.refusal(
          `it is not keeping up: ${stream.unwritten} bytes of calls are waiting to be written to it; retry after a backoff`,
        ),
      );
    this.nextSeq++;
    stream.unwritten += bytes.length;
    return new Promise((resolve, reject) => {
      const leaseFor = lease ? caller : undefined;
      const sentAt = performance.now();
      if (!signal) {
        stream.pending.set(seq, { sentAt, bytes, leaseFor, resolve, reject });
      } else {
        // the caller left: stop waiting; what the call leases goes back when it comes
        const left = () => {
          if (!stream.pending.get(seq)) return;
          this.abandon(stream, seq, leaseFor);
          reject(this.failure(Status.CANCELLED, "the caller left before the answer"));
        };
        signal.addEventListener("abort", left, { once: true });
        const settled = () => signal.removeEventListener("abort", left);
        stream.pending.set(seq, {
          sentAt,
          bytes,
          leaseFor,
          resolve: (a) => (settled(), resolve(a)),
          reject: (e) => (settled(), reject(e)),
        });
      }
      this.sweeper ??= setInterval(() => this.sweep(), Math.min(SWEEP_MS, this.timeoutMs));
      stream.requests.push(seq);
    });
  }

  /**
   * Stops waiting for call `seq`. One not written yet never will be, and its bytes
   * go now; a lease that was written has its late answer given back for `leaseFor`.
   */
  private abandon(stream: Stream, seq: number, leaseFor: Caller | undefined): void {
    const p = stream.pending.get(seq);
    stream.pending.delete(seq);
    if (p?.bytes) {
      stream.unwritten -= p.bytes.length;
      p.bytes = undefined;
      return;
    }
    if (leaseFor) {
      stream.late.set(seq, leaseFor);
      if (stream.late.size > MAX_LATE) stream.late.delete(stream.late.keys().next().value!);
    }
  }

  /**
   * Gives back leases no caller will get, uncounted; resolves once the shard answered
   * (never rejects: if this fails too, the leases expire and the tasks are delivered
   * again; `onGiveBackLost` is told).
   */
  giveBack(tokens: readonly string[], caller: Caller): Promise<void> {
    if (tokens.length === 0) return Promise.resolve();
    return this.send(forwardedRelease([...tokens]), caller).then(
      () => undefined,
      (err: unknown) => this.onGiveBackLost(tokens.length, err),
    );
  }

  close(): void {
    this.closed = true;
    for (const s of [...this.streams])
      this.end(
        s,
        this.failure(
          Status.UNAVAILABLE,
          "its connection was closed before it answered; the call may or may not have been applied",
        ),
      );
  }

  private start(): Stream {
    const stream: Stream = {
      requests: new Channel(),
      abort: new AbortController(),
      pending: new SeqWindow(),
      unwritten: 0,
      late: new Map(),
    };
    this.streams.add(stream);
    void this.read(stream);
    return stream;
  }

  private async read(stream: Stream): Promise<void> {
    // a call abandoned while it waited to be written is never written
    const unanswered = async function* () {
      for await (const seq of stream.requests) {
        const p = stream.pending.get(seq);
        const bytes = p?.bytes;
        if (!p || !bytes) continue;
        p.bytes = undefined;
        stream.unwritten -= bytes.length;
        yield bytes;
      }
    };
    let failure: unknown;
    try {
      const answers = this.client.forward(unanswered(), { signal: stream.abort.signal });
      for await (const answer of answers) {
        if (answer.draining) this.detach(stream);
        else this.answered(stream, answer);
      }
    } catch (err) {
      failure = err;
    }
    if (!this.streams.has(stream)) return; // ended by close(): its calls are failed already
    if (failure instanceof ClientError && failure.code === Status.UNIMPLEMENTED) {
      this.unsupported = true;
      return this.end(stream, new LaneMissing());
    }
    // the shard refused the router itself (its secret): every call would be refused
    if (failure instanceof ClientError && REFUSALS.has(failure.code))
      return this.end(stream, this.failure(failure.code, failure.details));
    const reason =
      failure instanceof ClientError
        ? `${Status[failure.code]}: ${failure.details}`
        : failure === undefined
          ? "it ended"
          : String(failure);
    this.end(
      stream,
      this.failure(
        Status.UNAVAILABLE,
        `its forwarding stream broke before answering (${reason}); the call may or may not have been applied: retry it (an enqueue with its idempotency keys)`,
      ),
    );
  }

  /** The shard drains: new calls go on a new stream; this one is half-closed and answers what it has. */
  private detach(stream: Stream): void {
    if (this.current === stream) this.current = undefined;
    stream.requests.close();
  }

  private answered(stream: Stream, a: ForwardAnswer): void {
    const p = stream.pending.get(a.seq);
    if (!p) {
      // timed out already; a lease it took goes back rather than wait out its duration
      const leaseFor = stream.late.get(a.seq);
      stream.late.delete(a.seq);
      if (leaseFor && a.leased) this.giveBack(tokensOf(a.leased), leaseFor);
      return;
    }
    stream.pending.delete(a.seq);
    if (!a.error) return p.resolve(a);
    const code = a.error.code as Status;
    const message = a.error.message || `status ${Status[code] ?? code} without a message`;
    if (code === Status.UNAVAILABLE && a.mapVersion > 0)
      return p.reject(new FencedError(this.shard, a.mapVersion, a.owner || undefined, message));
    p.reject(new ClientError(this.path(), code, message));
  }

  /** Fails the stream's calls not answered, and the stream if it is open. */
  private end(stream: Stream, err: unknown): void {
    this.streams.delete(stream);
    if (this.current === stream) this.current = undefined;
    stream.requests.close();
    stream.abort.abort();
    for (const p of stream.pending.takeAll()) p.reject(err);
    if (this.streams.size === 0) this.stopSweeping();
  }

  private sweep(): void {
    const before = performance.now() - this.timeoutMs;
    let left = 0;
    for (const stream of this.streams) {
      for (let o = stream.pending.oldest(); o; o = stream.pending.oldest()) {
        const { seq, value: p } = o;
        if (p.sentAt > before) break; // sent in order: the rest are younger
        this.abandon(stream, seq, p.leaseFor);
        p.reject(
          this.failure(
            Status.DEADLINE_EXCEEDED,
            `no answer within ${this.timeoutMs} ms; the call may or may not have been applied`,
          ),
        );
      }
      left += stream.pending.size;
    }
    if (left === 0) this.stopSweeping();
  }

  private stopSweeping(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  private failure(code: Status, why: string): ClientError {
    return new ClientError(this.path(), code, `shard ${this.shard}: ${why}`);
  }

  private refusal(why: string): LaneRefused {
    return new LaneRefused(this.path(), Status.UNAVAILABLE, `shard ${this.shard}: ${why}`);
  }

  private path(): string {
    return forwardService.forward.path;
  }
}
