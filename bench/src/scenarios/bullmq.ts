import { setTimeout as sleep } from "node:timers/promises";
import { Queue, Worker, type JobsOptions } from "bullmq";
import { redisCpuSeconds } from "../environment";
import { measure } from "../measure";
import { deleteKeys } from "../redis-variant";
import type { Scenario, ScenarioContext, VariantResult } from "../scenario";

/**
 * BullMQ, the peer, on the run's redis-server, producer and Worker in this process as the
 * shard scenario runs the shard worker and its clients:
 *
 * - produce+process: PRODUCERS loops of addBulk(100) while a Worker (concurrency 64)
 *   processes; producers wait while more than BACKLOG jobs are unfinished, as the shard
 *   scenario's stream producers do. Rate = jobs completed in the window.
 * - addBulk: the same producers with no Worker; the jobs they add (warm-up included)
 *   are the backlog of the next variant.
 * - backlog drain: a Worker (concurrency 64) started on that backlog, timed until it has
 *   completed every job (one run, no warm-up: no per-cycle latency).
 *
 * Settings: the processor returns at once; no rate limiter; default lock duration
 * (30 s), stalled checks and events stream. Completed jobs are kept 10 minutes
 * (removeOnComplete: { age: 600 }), as codeQ keeps completed tasks by default, so the
 * two store and clean up the same; "produce+process, removed" deletes them at once
 * (removeOnComplete: true, codeQ's completedRetentionMs 0) for reference. removeOnFail
 * keeps the default: no job fails.
 */

const CONCURRENCY = 64;
const PRODUCERS = 4;
const BATCH = 100;
const BACKLOG = 10_000;
const KEEP_10_MIN: JobsOptions = { removeOnComplete: { age: 600 } };
const PAYLOAD = { p: "p".repeat(64) };
const PREFIX = "bench-bullmq";

interface Rig {
  readonly ctx: ScenarioContext;
  readonly connection: { host: string; port: number };
  cpu(): Promise<number>;
}

/** The run's warm-up and window, with the server's CPU and progress under `label`. */
const windows = (rig: Rig, label: string) => ({
  warmupMs: rig.ctx.options.warmupSeconds * 1000,
  durationMs: rig.ctx.options.seconds * 1000,
  serverCpu: () => rig.cpu(),
  progress: (text: string) => rig.ctx.progress(`${label}: ${text}`),
});

/** A Worker whose processor does nothing; counts completions and keeps its first error. */
function worker(rig: Rig, queue: string) {
  const w = new Worker(queue, async () => undefined, {
    connection: rig.connection,
    prefix: PREFIX,
    concurrency: CONCURRENCY,
  });
  const state = { completed: 0, failure: undefined as unknown };
  w.on("completed", () => state.completed++);
  w.on("failed", (_, err) => (state.failure ??= err));
  w.on("error", (err) => (state.failure ??= err));
  return { w, state };
}

const JOBS = Array.from({ length: BATCH }, () => ({ name: "job", data: PAYLOAD }));

async function produceAndProcess(
  rig: Rig,
  name: string,
  queue: string,
  opts: JobsOptions,
): Promise<VariantResult> {
  const q = new Queue(queue, {
    connection: rig.connection,
    prefix: PREFIX,
    defaultJobOptions: opts,
  });
  const { w, state } = worker(rig, queue);
  let added = 0;
  try {
    const m = await measure({
      ...windows(rig, `bullmq: ${name}`),
      concurrency: PRODUCERS,
      units: () => state.completed,
      cycle: async () => {
        while (added - state.completed > BACKLOG) {
          if (state.failure !== undefined) throw state.failure;
          await sleep(1);
        }
        added += BATCH;
        await q.addBulk(JOBS);
        return BATCH;
      },
    });
    const shape = `${PRODUCERS} producers addBulk ${BATCH} (≤ ${BACKLOG} unfinished); Worker concurrency ${CONCURRENCY}, no-op processor`;
    return { name, unit: "jobs", shape, concurrency: PRODUCERS, ...m };
  } finally {
    await w.close();
    await q.close();
  }
}

async function addBulkThenDrain(rig: Rig): Promise<VariantResult[]> {
  const queue = "backlog";
  const q = new Queue(queue, {
    connection: rig.connection,
    prefix: PREFIX,
    defaultJobOptions: KEEP_10_MIN,
  });
  try {
    const add = async () => (await q.addBulk(JOBS), BATCH);
    const adding = await measure({
      ...windows(rig, "bullmq: addBulk"),
      concurrency: PRODUCERS,
      cycle: add,
    });
    const total = await q.count();
    rig.ctx.progress(`bullmq: backlog drain: ${total} jobs`);
    const [t0, cpu0, server0] = [performance.now(), process.cpuUsage(), await rig.cpu()];
    const { w, state } = worker(rig, queue);
    try {
      while (state.completed < total) {
        if (state.failure !== undefined) throw state.failure;
        await sleep(5);
      }
    } finally {
      await w.close();
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const drain = {
      units: state.completed,
      seconds,
      perSecond: state.completed / seconds,
      cycles: 0,
      p50Ms: 0,
      p99Ms: 0,
      clientCpu: (cpu.user + cpu.system) / 1e6 / seconds,
      serverCpu: ((await rig.cpu()) - server0) / seconds,
    };
    return [
      {
        name: "addBulk",
        unit: "jobs",
        shape: `${PRODUCERS} loops of addBulk ${BATCH}, no Worker`,
        concurrency: PRODUCERS,
        ...adding,
      },
      {
        name: "backlog drain",
        unit: "jobs",
        shape: `Worker concurrency ${CONCURRENCY} until ${total} jobs are done`,
        concurrency: CONCURRENCY,
        ...drain,
      },
    ];
  } finally {
    await q.close();
  }
}

export const bullmqScenario: Scenario = {
  name: "bullmq",
  summary: "BullMQ on the same redis-server: produce+process, addBulk, backlog drain",
  async run(ctx) {
    const admin = ctx.server.client();
    admin.on("error", () => undefined);
    const rig: Rig = {
      ctx,
      connection: { host: ctx.server.host, port: ctx.server.port },
      cpu: () => redisCpuSeconds(admin),
    };
    try {
      const variants = [
        await produceAndProcess(rig, "produce+process", "kept", KEEP_10_MIN),
        await produceAndProcess(rig, "produce+process, removed", "removed", {
          removeOnComplete: true,
        }),
        ...(await addBulkThenDrain(rig)),
      ];
      return { variants, ratios: [] };
    } finally {
      await deleteKeys(admin, `${PREFIX}*`).finally(() => admin.disconnect());
    }
  },
};
