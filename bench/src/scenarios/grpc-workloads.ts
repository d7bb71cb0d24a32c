import { setTimeout as sleep } from "node:timers/promises";
import {
  EnqueueStreamRequest,
  type EnqueueRequest,
  type ItemStatus,
  type LeasedTask,
  type QueueServiceClient,
} from "@codeq/proto";
import { Channel } from "@codeq/server-kit";
import type { VariantResult } from "../scenario";
import { CHANNELS, type Rig } from "./grpc-rig";

/**
 * The QueueService workloads the gRPC scenarios share (`shard` drives a shard worker
 * with them, `router` the same worker directly and through a router). Each takes the
 * command its tasks use: a variant needs a command of its own, so that what one
 * leaves queued does not feed the next.
 */

export const BATCH = 100;
export const UNARY_LOOPS = 16;
export const PRODUCERS = 4;
export const STREAMS = 4;
export const CREDITS = 500;
/** Stream producers wait while more tasks than this are enqueued and not yet acked. */
export const BACKLOG = 10_000;
export const PAYLOAD = Buffer.alloc(64, "p");

/** What a variant is called and which command its tasks use. */
export interface Workload {
  readonly name: string;
  readonly command: string;
}

/** A payload carrying its send time (`performance.now()`), for enqueue→delivery latency. */
export function stamped() {
  const payload = Buffer.from(PAYLOAD);
  payload.writeDoubleLE(performance.now(), 0);
  return payload;
}

/** How long ago, at `now`, a task with a `stamped` payload was sent, ms. */
export const sinceSent = (t: LeasedTask, now: number) =>
  now - Buffer.from(t.task!.payload).readDoubleLE(0);

export const tasks = (command: string, n: number, payload = () => PAYLOAD) =>
  Array.from({ length: n }, (): Partial<EnqueueRequest> => ({ command, payload: payload() }));

/** Throws on the first refused item: a refusal means the benchmark itself is wrong. */
export function allOk(what: string, statuses: readonly (ItemStatus | undefined)[]): number {
  const bad = statuses.find((s) => (s?.code ?? 0) !== 0);
  if (bad) throw new Error(`${what} refused: ${bad.code} ${bad.message}`);
  return statuses.length;
}

/** Sends one EnqueueBatch and checks every item was stored. */
export async function enqueue(client: QueueServiceClient, items: Partial<EnqueueRequest>[]) {
  const res = await client.enqueueBatch({ tasks: items });
  allOk(
    "enqueue",
    res.results.map((r) => r.status),
  );
}

/** What a LeaseStream worker may send (the client takes partial messages). */
type StreamRequest =
  Parameters<QueueServiceClient["leaseStream"]>[0] extends AsyncIterable<infer R> ? R : never;

/** A LeaseStream worker: acks each pushed batch in one message that also returns its credits. */
export class StreamWorker {
  acked = 0;
  failure: unknown;
  private readonly outbox: StreamRequest[] = [];
  private wake: (() => void) | undefined;
  private readonly abort = new AbortController();
  private readonly done: Promise<void>;

  constructor(client: QueueServiceClient, command: string, onTasks?: (t: LeasedTask[]) => void) {
    this.send({ subscribe: { commands: [command], maxBatch: BATCH }, credits: CREDITS });
    this.done = this.run(client, onTasks).catch((err: unknown) => {
      if (!this.abort.signal.aborted) this.failure = err;
    });
  }

  private send(req: StreamRequest): void {
    this.outbox.push(req);
    this.wake?.();
  }

  private async *requests(): AsyncGenerator<StreamRequest> {
    while (!this.abort.signal.aborted) {
      const next = this.outbox.shift();
      if (next) yield next;
      else await new Promise<void>((r) => (this.wake = r));
    }
  }

  private async run(client: QueueServiceClient, onTasks?: (t: LeasedTask[]) => void) {
    let requestId = 0;
    for await (const res of client.leaseStream(this.requests(), { signal: this.abort.signal })) {
      const pushed = res.tasks?.tasks ?? [];
      if (pushed.length > 0) {
        onTasks?.(pushed);
        const acks = pushed.map((t) => ({ leaseToken: t.leaseToken }));
        this.send({ requestId: ++requestId, credits: pushed.length, acks });
      }
      if (res.settled) this.acked += allOk("stream ack", res.settled.acks);
    }
  }

  /** Cancels the stream (the server releases what it still holds). */
  async close(): Promise<void> {
    this.abort.abort();
    this.wake?.();
    await this.done;
  }
}

/**
 * A producer on one EnqueueStream (the high-rate producer path): `send` stores a batch
 * without a unary call's per-call cost; every answer is checked like `enqueue`'s, and
 * the first refusal or failure is kept in `failure`.
 */
class StreamProducer {
  failure: unknown;
  private seq = 0;
  private readonly requests = new Channel<EnqueueStreamRequest>();
  private readonly done: Promise<void>;

  constructor(client: QueueServiceClient) {
    const answers = client.enqueueStream(this.requests);
    this.done = (async () => {
      for await (const res of answers)
        allOk(
          "enqueue",
          res.results.map((r) => r.status),
        );
    })().catch((err: unknown) => {
      this.failure = err;
    });
  }

  send(items: Partial<EnqueueRequest>[]): void {
    this.requests.push(EnqueueStreamRequest.fromPartial({ seq: ++this.seq, tasks: items }));
  }

  /** Half-closes the stream and waits for every answer. */
  async close(): Promise<void> {
    this.requests.close();
    await this.done;
    if (this.failure) throw this.failure;
  }
}

/**
 * Calls `send` every `intervalMs` until `stopped()`, open loop: intervals the loop
 * slept through are sent at once, so the offered rate holds.
 */
export async function paced(
  intervalMs: number,
  send: () => void,
  stopped: () => boolean,
): Promise<void> {
  let due = performance.now();
  while (!stopped()) {
    for (; due <= performance.now(); due += intervalMs) send();
    await sleep(Math.max(0, due - performance.now()));
  }
}

/** How a paced producer sends: a unary call per batch, or messages on one EnqueueStream. */
export type Producer = "EnqueueBatch" | "EnqueueStream";

/**
 * An open-loop producer: every `intervalMs` one batch of `batch` tasks stamped with
 * their send time, sent `via` EnqueueBatch calls or one EnqueueStream, never waiting for
 * answers, so a slow answer does not lower the offered load (see `paced`).
 */
export class PacedProducer {
  /** Tasks sent so far. */
  sent = 0;
  private stopped = false;
  private failure: { err: unknown } | undefined;
  private readonly stream: StreamProducer | undefined;
  private readonly done: Promise<void>;

  constructor(
    rig: Pick<Rig, "client">,
    command: string,
    batch: number,
    intervalMs: number,
    via: Producer,
  ) {
    this.stream = via === "EnqueueStream" ? new StreamProducer(rig.client()) : undefined;
    const send = (items: Partial<EnqueueRequest>[]) => {
      if (this.stream) this.stream.send(items);
      else enqueue(rig.client(), items).catch((err: unknown) => (this.failure ??= { err }));
    };
    this.done = paced(
      intervalMs,
      () => {
        this.sent += batch;
        send(tasks(command, batch, stamped));
      },
      () => this.stopped,
    );
  }

  /** Throws what the first refused or failed batch threw. */
  check(): void {
    if (this.failure) throw this.failure.err;
    if (this.stream?.failure) throw this.stream.failure;
  }

  /** Stops sending; with a stream, half-closes it and waits for every answer. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
    await this.stream?.close();
  }
}

/** Runs STREAMS stream workers on `command` for as long as `body` runs. */
export async function withStreams<T>(
  rig: Pick<Rig, "client">,
  command: string,
  onTasks: ((t: LeasedTask[]) => void) | undefined,
  body: (acked: () => number, failed: () => void) => Promise<T>,
): Promise<T> {
  const workers = Array.from(
    { length: STREAMS },
    () => new StreamWorker(rig.client(), command, onTasks),
  );
  const failed = () => {
    const bad = workers.find((w) => w.failure !== undefined);
    if (bad) throw bad.failure;
  };
  try {
    return await body(() => workers.reduce((sum, w) => sum + w.acked, 0), failed);
  } finally {
    await Promise.all(workers.map((w) => w.close()));
  }
}

/** UNARY_LOOPS loops of EnqueueBatch(BATCH) → Lease(max BATCH, until BATCH or empty) → Ack. */
export function unaryCycles(rig: Rig, w: Workload): Promise<VariantResult> {
  const items = tasks(w.command, BATCH);
  const shape = `EnqueueBatch ${BATCH} → Lease max ${BATCH} → Ack ${BATCH}, ${CHANNELS} channels`;
  const v = { name: w.name, unit: "tasks", shape, concurrency: UNARY_LOOPS };
  return rig.run(v, {
    cycle: async () => {
      const client = rig.client();
      await enqueue(client, items);
      const tokens: string[] = [];
      while (tokens.length < BATCH) {
        const got = await client.lease({ commands: [w.command], maxTasks: BATCH - tokens.length });
        if (got.tasks.length === 0) break;
        tokens.push(...got.tasks.map((t) => t.leaseToken));
      }
      if (tokens.length === 0) return 0;
      const res = await client.ack({ items: tokens.map((leaseToken) => ({ leaseToken })) });
      return allOk("ack", res.results);
    },
  });
}

/**
 * PRODUCERS loops of EnqueueBatch(BATCH), waiting while more than BACKLOG tasks are
 * unacked (a sustained rate, not a growing backlog), and STREAMS LeaseStream workers
 * acking what they get; the rate is tasks acked.
 */
export function streamCycles(rig: Rig, w: Workload): Promise<VariantResult> {
  const items = tasks(w.command, BATCH);
  const shape = `${PRODUCERS} producers EnqueueBatch ${BATCH} (≤ ${BACKLOG} unacked); ${STREAMS} LeaseStreams, ${CREDITS} credits, ack + credits per batch`;
  const v = { name: w.name, unit: "tasks", shape, concurrency: PRODUCERS };
  let enqueued = 0;
  return withStreams(rig, w.command, undefined, (acked, failed) =>
    rig.run(v, {
      units: acked,
      cycle: async () => {
        while (enqueued - acked() > BACKLOG) {
          failed();
          await sleep(1);
        }
        enqueued += BATCH;
        await enqueue(rig.client(), items);
        return 0;
      },
    }),
  );
}
