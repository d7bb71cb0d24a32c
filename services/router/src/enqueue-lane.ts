import { ClientError, Status, type Client } from "nice-grpc";
import { internal, type EnqueueBatchResponse } from "@codeq/proto";
import { Channel } from "@codeq/server-kit";
import { readForwardAnswer, type ForwardAnswer, type Raw } from "./passthrough";
import { FencedError } from "./routing";

/**
 * Whose batch it is, as a ForwardEnqueueRequest states it: what the identity
 * metadata of a forwarded QueueService call would say.
 */
export interface Caller {
  readonly tenant: string;
  /** Percent-encoded, as in x-codeq-principal. */
  readonly principal: string;
  /** Comma-separated, as in x-codeq-roles. */
  readonly roles: string;
  /** The shard map version the router routed by. */
  readonly mapVersion: number;
}

/**
 * The router's side of codeq.internal.v1.ShardService.ForwardEnqueue: its request
 * is sent as bytes the router put together (the client's batch and a header
 * stating whose it is), its answer read without decoding the batch's results.
 */
export const forwardEnqueueService = {
  forwardEnqueue: {
    path: `/${internal.ShardServiceDefinition.fullName}/ForwardEnqueue`,
    requestStream: true,
    responseStream: true,
    requestSerialize: (bytes: Uint8Array) => bytes,
    requestDeserialize: (bytes: Uint8Array) => bytes,
    responseSerialize: (): Uint8Array => {
      throw new Error("the router never answers ForwardEnqueue");
    },
    responseDeserialize: readForwardAnswer,
    options: {},
  },
} as const;

export type ForwardEnqueueClient = Client<typeof forwardEnqueueService>;

interface Pending {
  readonly sentAt: number;
  resolve(answer: Raw<EnqueueBatchResponse>): void;
  reject(err: unknown): void;
}

/** How often sent batches are checked against the lane's deadline, at most, ms. */
const SWEEP_MS = 250;

/**
 * One ForwardEnqueue stream to a shard worker, carrying every caller's enqueue
 * batches for it: a batch costs a message on an open HTTP/2 stream instead of a
 * call (stream setup, headers and trailers on both sides), which on the router
 * and on the shard worker is most of what forwarding an enqueue costs.
 *
 * The stream opens on the first batch and again after it ended. A batch is
 * answered by its seq. When the stream breaks or ends (the shard worker stopped
 * or drains), batches sent and not yet answered fail with UNAVAILABLE: they may or
 * may not have been stored, and the caller may retry them with their idempotency
 * keys, as after any failed call. A batch unanswered after `timeoutMs` fails with
 * DEADLINE_EXCEEDED. A shard worker without ForwardEnqueue (older than the router)
 * answers UNIMPLEMENTED before reading anything: the lane is then `unsupported`
 * and its batches are handed to `fallback` (EnqueueBatch calls).
 */
export class EnqueueLane {
  private readonly pending = new Map<number, Pending>();
  private nextSeq = 1;
  private open: { requests: Channel<Uint8Array>; abort: AbortController } | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  /** The shard worker does not serve ForwardEnqueue. */
  unsupported = false;

  constructor(
    private readonly shard: string,
    private readonly client: ForwardEnqueueClient,
    private readonly timeoutMs: number,
  ) {}

  /** Batches sent and not answered yet. */
  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Sends `tasks` (ForwardEnqueueRequest field 1: a batch's items) on behalf of
   * `caller`. Resolves with the shard's answer; rejects with FencedError
   * when the shard refused it by fencing, with a ClientError (the status the
   * EnqueueBatch call would have ended with) when it refused it otherwise.
   */
  send(tasks: Uint8Array, caller: Caller): Promise<Raw<EnqueueBatchResponse>> {
    const seq = this.nextSeq++;
    const stream = (this.open ??= this.start());
    const header = internal.ForwardEnqueueRequest.encode({ tasks: [], seq, ...caller }).finish();
    const bytes = concat(tasks, header);
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { sentAt: Date.now(), resolve, reject });
      this.sweeper ??= setInterval(() => this.sweep(), Math.min(SWEEP_MS, this.timeoutMs));
      stream.requests.push(bytes);
    });
  }

  close(): void {
    this.end(
      new ClientError(this.path(), Status.UNAVAILABLE, `shard ${this.shard}: connection closed`),
    );
  }

  private start(): { requests: Channel<Uint8Array>; abort: AbortController } {
    const open = { requests: new Channel<Uint8Array>(), abort: new AbortController() };
    void this.read(open);
    return open;
  }

  private async read(open: { requests: Channel<Uint8Array>; abort: AbortController }) {
    let failure: unknown;
    try {
      const answers = this.client.forwardEnqueue(open.requests, { signal: open.abort.signal });
      for await (const answer of answers) this.answered(answer);
    } catch (err) {
      failure = err;
    }
    open.requests.close();
    // a stream closed by end() has had its batches failed there already
    if (this.open !== open) return;
    this.open = undefined;
    if (failure instanceof ClientError && failure.code === Status.UNIMPLEMENTED) {
      this.unsupported = true;
    }
    const reason =
      failure instanceof ClientError
        ? `${Status[failure.code]}: ${failure.details}`
        : failure === undefined
          ? "the shard worker ended it (draining)"
          : String(failure);
    this.end(
      new ClientError(
        this.path(),
        this.unsupported ? Status.UNIMPLEMENTED : Status.UNAVAILABLE,
        `shard ${this.shard}: the enqueue stream ended before answering (${reason}); the batch may or may not be stored, retry it with its idempotency keys`,
      ),
    );
  }

  private answered(a: ForwardAnswer): void {
    const p = this.pending.get(a.seq);
    if (!p) return; // timed out already
    this.pending.delete(a.seq);
    if (a.answer) return p.resolve(a.answer);
    const code = (a.error?.code ?? Status.INTERNAL) as Status;
    const message = a.error?.message || "the shard answered neither results nor an error";
    if (code === Status.UNAVAILABLE && a.mapVersion > 0)
      return p.reject(new FencedError(this.shard, a.mapVersion, a.owner || undefined, message));
    p.reject(new ClientError(this.path(), code, message));
  }

  /** Fails every batch sent and not answered, and the stream if it is open. */
  private end(err: ClientError): void {
    const open = this.open;
    this.open = undefined;
    open?.abort.abort();
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.stopSweeping();
  }

  private sweep(): void {
    const before = Date.now() - this.timeoutMs;
    for (const [seq, p] of this.pending) {
      if (p.sentAt > before) break; // sent in order: the rest are younger
      this.pending.delete(seq);
      p.reject(
        new ClientError(
          this.path(),
          Status.DEADLINE_EXCEEDED,
          `shard ${this.shard}: no answer to an enqueue within ${this.timeoutMs} ms; it may or may not be stored`,
        ),
      );
    }
    if (this.pending.size === 0) this.stopSweeping();
  }

  private stopSweeping(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  private path(): string {
    return forwardEnqueueService.forwardEnqueue.path;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
