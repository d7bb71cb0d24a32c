import { setTimeout as sleep } from "node:timers/promises";
import { createChannel, createClient, Metadata, type Channel } from "nice-grpc";
import {
  QueueServiceDefinition,
  type EnqueueRequest,
  type ItemStatus,
  type LeasedTask,
  type QueueServiceClient,
} from "@codeq/proto";
import { ServiceProcess } from "@codeq/local-cluster";
import { freePort } from "@codeq/testing";
import { redisCpuSeconds } from "../environment";
import { measure, percentile, type MeasureOptions } from "../measure";
import { deleteKeys } from "../redis-variant";
import type { Scenario, ScenarioContext, ScenarioResult, VariantResult } from "../scenario";

/**
 * A real shard worker, in this process, on the run's redis-server, driven over gRPC on
 * loopback as clients drive it (issue 4's benchmark). The worker runs with its
 * defaults (completed tasks kept 10 minutes, background loops on), so "node CPU" is
 * the shard worker and its clients together.
 *
 * - unary batch cycles: loops of EnqueueBatch(100) → Lease(max 100) → Ack(100).
 * - stream cycles: producers send EnqueueBatch(100) while LeaseStream workers ack each
 *   pushed batch in one message that also returns its credits. Producers wait while
 *   more than BACKLOG tasks are unacked, so the rate is sustained, not a growing backlog.
 * - enqueue→delivery: one producer paced at half the stream peak just measured sends,
 *   every LATENCY_INTERVAL_MS, as many tasks as that rate asks for, in one EnqueueBatch,
 *   without waiting for earlier answers (open loop: a slow answer does not slow the
 *   offered load); each payload carries its send time, read when a stream worker gets
 *   the task. The interval, not the batch size, is fixed: small batches at a high rate
 *   cost several times more per task than the peak's batches of 100, so "10 tasks every
 *   0.3 ms" would overload the worker at half of its peak and measure the overload.
 */

const TENANT = "bench";
const BATCH = 100;
const CHANNELS = 4;
const UNARY_LOOPS = 16;
const PRODUCERS = 4;
const STREAMS = 4;
const CREDITS = 500;
const BACKLOG = 10_000;
const LATENCY_SHARE = 0.5;
/** The paced producer sends every LATENCY_INTERVAL_MS as many tasks as the rate asks. */
const LATENCY_INTERVAL_MS = 2;
/** The bound on enqueue→delivery p99 at LATENCY_SHARE of the peak, ms. */
const P99_TARGET_MS = 5;
const PAYLOAD = Buffer.alloc(64, "p");

const tasks = (command: string, n: number, payload = () => PAYLOAD) =>
  Array.from({ length: n }, (): Partial<EnqueueRequest> => ({ command, payload: payload() }));

/** Throws on the first refused item: a refusal means the benchmark itself is wrong. */
function allOk(what: string, statuses: readonly (ItemStatus | undefined)[]): number {
  const bad = statuses.find((s) => (s?.code ?? 0) !== 0);
  if (bad) throw new Error(`${what} refused: ${bad.code} ${bad.message}`);
  return statuses.length;
}

/** What a LeaseStream worker may send (the client takes partial messages). */
type StreamRequest =
  Parameters<QueueServiceClient["leaseStream"]>[0] extends AsyncIterable<infer R> ? R : never;

/** A LeaseStream worker: acks each pushed batch in one message that also returns its credits. */
class StreamWorker {
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

/** Sends one EnqueueBatch and checks every item was stored. */
async function enqueue(client: QueueServiceClient, items: Partial<EnqueueRequest>[]) {
  const res = await client.enqueueBatch({ tasks: items });
  allOk(
    "enqueue",
    res.results.map((r) => r.status),
  );
}

/** The shard worker's clients (round-robin over the channels) and the measuring harness. */
interface Rig {
  client(): QueueServiceClient;
  run(
    v: Pick<VariantResult, "name" | "unit" | "shape" | "concurrency">,
    o: Omit<MeasureOptions, "warmupMs" | "durationMs" | "serverCpu" | "concurrency">,
  ): Promise<VariantResult>;
}

function unaryCycles(rig: Rig): Promise<VariantResult> {
  const command = "BENCH_UNARY";
  const items = tasks(command, BATCH);
  const shape = `EnqueueBatch ${BATCH} → Lease max ${BATCH} → Ack ${BATCH}, ${CHANNELS} channels`;
  const v = { name: "unary batch cycles", unit: "tasks", shape, concurrency: UNARY_LOOPS };
  return rig.run(v, {
    cycle: async () => {
      const client = rig.client();
      await enqueue(client, items);
      const tokens: string[] = [];
      while (tokens.length < BATCH) {
        const got = await client.lease({ commands: [command], maxTasks: BATCH - tokens.length });
        if (got.tasks.length === 0) break;
        tokens.push(...got.tasks.map((t) => t.leaseToken));
      }
      if (tokens.length === 0) return 0;
      const res = await client.ack({ items: tokens.map((leaseToken) => ({ leaseToken })) });
      return allOk("ack", res.results);
    },
  });
}

/** Runs STREAMS stream workers on `command` for as long as `body` runs. */
async function withStreams<T>(
  rig: Rig,
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

function streamCycles(rig: Rig): Promise<VariantResult> {
  const command = "BENCH_STREAM";
  const items = tasks(command, BATCH);
  const shape = `${PRODUCERS} producers EnqueueBatch ${BATCH} (≤ ${BACKLOG} unacked); ${STREAMS} LeaseStreams, ${CREDITS} credits, ack + credits per batch`;
  const v = { name: "stream cycles", unit: "tasks", shape, concurrency: PRODUCERS };
  let enqueued = 0;
  return withStreams(rig, command, undefined, (acked, failed) =>
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

async function deliveryLatency(rig: Rig, rate: number): Promise<VariantResult> {
  const command = "BENCH_LATENCY";
  const samples: number[] = [];
  let [open, delivered] = [false, 0];
  const onTasks = (pushed: LeasedTask[]) => {
    const now = performance.now();
    delivered += pushed.length;
    if (open)
      for (const t of pushed) samples.push(now - Buffer.from(t.task!.payload).readDoubleLE(0));
  };
  const stamped = () => {
    const payload = Buffer.from(PAYLOAD);
    payload.writeDoubleLE(performance.now(), 0);
    return payload;
  };
  const batch = Math.max(1, Math.round((rate * LATENCY_INTERVAL_MS) / 1000));
  const shape = `${batch} tasks every ${LATENCY_INTERVAL_MS} ms (${LATENCY_SHARE * 100}% of stream peak), not waiting for answers; p50/p99 = enqueue→delivery`;
  const v = { name: "enqueue→delivery", unit: "tasks", shape, concurrency: 1 };
  let due: number | undefined;
  let failure: { err: unknown } | undefined;
  const m = await withStreams(rig, command, onTasks, (_, failed) =>
    rig.run(v, {
      units: () => delivered,
      onWindow: (o) => (open = o),
      cycle: async () => {
        failed();
        if (failure) throw failure.err;
        for (due ??= performance.now(); due <= performance.now(); due += LATENCY_INTERVAL_MS) {
          enqueue(rig.client(), tasks(command, batch, stamped)).catch(
            (err: unknown) => (failure ??= { err }),
          );
        }
        await sleep(Math.max(0, due - performance.now()));
        return 0;
      },
    }),
  );
  samples.sort((a, b) => a - b);
  const [p50Ms, p99Ms] = [percentile(samples, 0.5), percentile(samples, 0.99)];
  return { ...m, cycles: samples.length, p50Ms, p99Ms };
}

async function run(ctx: ScenarioContext): Promise<ScenarioResult> {
  const keyPrefix = "bench-shard";
  // The shard worker runs in its own process, as in production, so the bench's
  // clients do not compete with it for one event loop.
  const address = `127.0.0.1:${await freePort()}`;
  const worker = await ServiceProcess.start("shard-a", "shard", address, {
    CODEQ_LOG_LEVEL: "warn",
    CODEQ_SHARD_ID: "a",
    CODEQ_SHARD_LISTEN: address,
    CODEQ_SHARD_METRICS_LISTEN: "",
    CODEQ_SHARD_REDIS_URL: ctx.server.url,
    CODEQ_SHARD_KEY_PREFIX: keyPrefix,
    CODEQ_SHARD_DEV_IDENTITY: "true",
    CODEQ_SHARD_GRACE_MS: "1000",
    NODE_OPTIONS: process.env.CODEQ_BENCH_SHARD_NODE_OPTIONS ?? "",
  });
  const metadata = new Metadata({ "x-codeq-tenant": TENANT });
  const channels: Channel[] = Array.from({ length: CHANNELS }, () => createChannel(address));
  const clients = channels.map((c) =>
    createClient(QueueServiceDefinition, c, { "*": { metadata } }),
  );
  const admin = ctx.server.client();
  admin.on("error", () => undefined);
  let turn = 0;
  const rig: Rig = {
    client: () => clients[turn++ % clients.length]!,
    run: async (v, o) => ({
      ...v,
      ...(await measure({
        concurrency: v.concurrency,
        ...o,
        warmupMs: ctx.options.warmupSeconds * 1000,
        durationMs: ctx.options.seconds * 1000,
        serverCpu: () => redisCpuSeconds(admin),
        progress: (text) => ctx.progress(`shard: ${v.name}: ${text}`),
      })),
    }),
  };
  try {
    const unary = await unaryCycles(rig);
    const stream = await streamCycles(rig);
    const latency = await deliveryLatency(rig, LATENCY_SHARE * stream.perSecond);
    const check = {
      name: `enqueue→delivery p99 at ${LATENCY_SHARE * 100}% of stream peak`,
      value: latency.p99Ms,
      unit: "ms",
      max: P99_TARGET_MS,
      met: latency.p99Ms < P99_TARGET_MS,
    };
    return { variants: [unary, stream, latency], ratios: [], checks: [check] };
  } finally {
    for (const c of channels) c.close();
    await worker.stop();
    await deleteKeys(admin, `${keyPrefix}*`).finally(() => admin.disconnect());
  }
}

export const shardScenario: Scenario = {
  name: "shard",
  summary: "a shard worker over gRPC: unary batch and stream cycles, enqueue→delivery latency",
  run,
};
