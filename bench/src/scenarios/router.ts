import { ServiceProcess } from "@codeq/local-cluster";
import { freePort } from "@codeq/testing";
import { latencyFigures, percentile } from "../measure";
import {
  fullGcCaveat,
  joinCaveats,
  ratio,
  type CheckResult,
  type FigureResult,
  type Scenario,
  type ScenarioContext,
  type ScenarioResult,
  type VariantResult,
} from "../scenario";
import { checkEvery, cpuPerThousand, disturbed, openRig, type Rig } from "./grpc-rig";
import { startPairedClient } from "./paired-client";
import { deleteUnder, writeShardMap } from "./shard-map";
import { metricsOn } from "../gc-watch";
import { deliveryLatency, LATENCY_WARMUP_SECONDS } from "./delivery-latency";
import {
  PAYLOAD,
  streamCycles,
  UNARY_LOOPS,
  unaryCycles,
  type Producer,
  type Workload,
} from "./grpc-workloads";

/**
 * What the router costs (issue 5's benchmark): one shard worker on the run's
 * redis-server, and a router in front of it whose shard map (in the same redis-server,
 * under its own prefix) sends every queue to that worker. Every workload runs in the
 * same run against the worker's address (direct) and against the router's (via
 * router), each with commands of its own:
 *
 * - unary batch cycles and stream cycles: the shard scenario's workloads, in turns:
 *   direct, via router, via router again, direct again. Their ratios (the issue's
 *   checks) pool each side's two windows: on a machine whose speed moves for seconds
 *   at a time (its neighbours), a slow spell weighs on both sides alike more often
 *   than with one window each (docs/performance.md, session 17).
 * - enqueue 1 peak: UNARY_LOOPS loops of a one-task Enqueue, as fast as they go.
 * - enqueue 1 at LATENCY_SHARE: one-task Enqueues paced at LATENCY_SHARE of the direct
 *   peak just measured, half of it direct and half via router, in pairs sent at the
 *   same moment (so both see the same moments of the machine: a stall of the shard
 *   worker or the clients lands in both, and only what the router adds tells them
 *   apart), without waiting for answers (open loop: a slow answer does not slow the
 *   offered load); p50/p99 are per call, send to answer, and each pair's difference is
 *   what the router added to that call (an info figure beside the check).
 * - enqueue→delivery at DELIVERY_SHARE of the direct stream peak: the shard scenario's
 *   latency variants (a paced producer, EnqueueStream or EnqueueBatch, and stream
 *   workers, in a process of their own), direct then via router: what the router adds
 *   end to end when it carries a task both ways, beside other calls (info figures).
 *
 * The router's CPU is read from /proc at both edges of each window, with the RPCs the
 * clients made in it (a unary call is one; on a stream each message sent or received).
 */

const SHARD_PREFIX = "bench-router-shard";
const CONTROL_PREFIX = "bench-router";
/** The issue's bound: via router at least this share of direct throughput. */
const THROUGHPUT_TARGET = 0.85;
/** The latency variant's rate, as a share of the direct one-task Enqueue peak. */
const LATENCY_SHARE = 0.25;
/** The issue's bound on the p99 the router adds at moderate load, ms. */
const ADDED_P99_TARGET_MS = 1;
/** The enqueue→delivery variants' rate, as a share of the direct stream cycles peak. */
const DELIVERY_SHARE = 0.25;

/** One workload's two variants (or two of anything): direct to the shard worker, then via router. */
type Pair<T = VariantResult> = readonly [direct: T, via: T];

/** UNARY_LOOPS loops of Enqueue (one task), each call a cycle. */
function enqueuePeak(rig: Rig, w: Workload): Promise<VariantResult> {
  const shape = `Enqueue 1 task, ${UNARY_LOOPS} loops`;
  return rig.run(
    { name: w.name, unit: "tasks", shape, concurrency: UNARY_LOOPS },
    {
      cycle: async () => {
        await rig.client().enqueue({ command: w.command, payload: PAYLOAD });
        return 1;
      },
    },
  );
}

/**
 * The latency pair: `rate` one-task Enqueues a second on each path at once (see
 * PairedEnqueues); p50/p99 are per call, and `added` is each pair's via − direct.
 */
async function enqueueLatency(
  rigOf: (address: string, clients: number | undefined) => Rig,
  addresses: Pair<string>,
  names: Pair<string>,
  rate: number,
): Promise<{ variants: Pair<VariantResult>; added: number[] }> {
  const clients = startPairedClient({
    addresses,
    commands: ["BENCH_LATENCY_DIRECT", "BENCH_LATENCY_ROUTER"],
    rate,
  });
  const rigs: Rig[] = [];
  const shape = `Enqueue 1 task at ${Math.round(rate)}/s on each path, a direct and a via-router call started together every ${(1000 / rate).toFixed(1)} ms (together ${LATENCY_SHARE * 100}% of direct peak), not waiting for answers, clients in a process of their own, warmed ≥ ${LATENCY_WARMUP_SECONDS} s; p50/p99 per call`;
  // pairs count while both windows are open; the client hears of each change once
  const open = [false, false];
  let both = false;
  let measured: VariantResult[];
  let latencies: [number[], number[]];
  try {
    for (const address of addresses) rigs.push(rigOf(address, clients.pid));
    measured = await Promise.all(
      ([0, 1] as const).map((path) =>
        rigs[path]!.run(
          { name: names[path], unit: "tasks", shape, concurrency: 1 },
          {
            minWarmupSeconds: LATENCY_WARMUP_SECONDS,
            units: () => clients.count(path),
            onWindow: (isOpen) => {
              open[path] = isOpen;
              if (both === (open[0]! && open[1]!)) return;
              both = !both;
              clients.window(both);
            },
            cycle: checkEvery(() => clients.check()),
            watchGc: path === 1, // the via-router window's stands for both
          },
        ),
      ),
    );
    latencies = await clients.stop();
  } finally {
    for (const rig of rigs) rig.close();
    await clients.close();
  }
  const [direct, via] = latencies;
  if (direct.length === 0) throw new Error(`${names[1]}: no pair was sent in the window`);
  const added = via.map((v, i) => v - direct[i]!);
  const own = clients.gcInWindow;
  const [d, v] = measured.map((m, path) => ({
    ...m,
    ...latencyFigures(path === 0 ? direct : via),
    // one call is one RPC; the clients' GC pauses stand with the via-router window's
    rpcs: m.units,
    gc: path === 1 && own ? { ...m.gc, clients: own } : m.gc,
  }));
  return { variants: [d!, v!], added };
}

/**
 * Two windows of one workload on one path as one: their units, seconds and RPCs added
 * up, each process's CPU per second (redis-server's too) weighted by its window's
 * length. Its latency percentiles and GC pauses are the first window's (percentiles do
 * not add up); it stands in the ratios and CPU figures, not in the table, which has
 * both windows (and their GC pauses, and whether other work disturbed them).
 */
function pooled(name: string, a: VariantResult, b: VariantResult): VariantResult {
  const seconds = a.seconds + b.seconds;
  const units = a.units + b.units;
  const weighted = (x = 0, y = 0) => (x * a.seconds + y * b.seconds) / seconds;
  const names = new Set([...Object.keys(a.processCpu ?? {}), ...Object.keys(b.processCpu ?? {})]);
  return {
    ...a,
    name,
    units,
    seconds,
    perSecond: units / seconds,
    cycles: a.cycles + b.cycles,
    clientCpu: weighted(a.clientCpu, b.clientCpu),
    ...(a.serverCpu === undefined ? {} : { serverCpu: weighted(a.serverCpu, b.serverCpu) }),
    rpcs: (a.rpcs ?? 0) + (b.rpcs ?? 0),
    processCpu: Object.fromEntries(
      [...names].map((n) => [n, weighted(a.processCpu?.[n], b.processCpu?.[n])]),
    ),
  };
}

/**
 * The router's CPU per 1000 RPCs in a via-router variant, next to the shard worker's
 * in the same workload sent direct (what the one that does the work spends).
 */
function routerCpuFigure([direct, via]: Pair, together = false): FigureResult {
  const cpuSeconds = (via.processCpu?.router ?? 0) * via.seconds;
  const rpcs = (via.rpcs ?? 0).toLocaleString("en-US");
  // run together, the shard worker's CPU serves both variants' RPCs
  const shard = together
    ? (cpuPerThousand(direct, "shard") * (direct.rpcs ?? 0)) /
      ((direct.rpcs ?? 0) + (via.rpcs ?? 0))
    : cpuPerThousand(direct, "shard");
  return {
    name: `router CPU per 1000 RPCs, ${via.name}`,
    value: cpuPerThousand(via, "router"),
    unit: "ms",
    detail: `${cpuSeconds.toFixed(2)} CPU s / ${rpcs} RPCs; shard worker${together ? ", both variants' RPCs" : ", direct"}: ${shard.toFixed(0)} ms`,
  };
}

/** What the router added to each call of the latency pair (via − direct, sent together). */
function addedPerCall(added: number[]): FigureResult {
  added.sort((a, b) => a - b);
  const [p50, p90] = [percentile(added, 0.5), percentile(added, 0.9)];
  return {
    name: `router added latency per call, p99 of the pairs (info)`,
    value: percentile(added, 0.99),
    unit: "ms",
    detail: `p50 ${p50.toFixed(2)}, p90 ${p90.toFixed(2)} ms over ${added.length.toLocaleString("en-US")} pairs`,
  };
}

/** What the router added to enqueue→delivery: via router less direct, p99 and p50. */
function addedDelivery(producer: Producer, [direct, via]: Pair): FigureResult {
  const caveat = disturbed([direct, via]);
  return {
    name: `router added enqueue→delivery p99, ${producer} (info)`,
    value: via.p99Ms - direct.p99Ms,
    unit: "ms",
    detail: `p50 ${(via.p50Ms - direct.p50Ms).toFixed(2)} ms; direct p50/p99 ${direct.p50Ms.toFixed(2)}/${direct.p99Ms.toFixed(2)}, via router ${via.p50Ms.toFixed(2)}/${via.p99Ms.toFixed(2)} ms${caveat ? `; ${caveat}` : ""}`,
  };
}

async function run(ctx: ScenarioContext): Promise<ScenarioResult> {
  const shardAddress = `127.0.0.1:${await freePort()}`;
  const routerAddress = `127.0.0.1:${await freePort()}`;
  await writeShardMap(ctx, CONTROL_PREFIX, { a: shardAddress });
  const shardMetrics = await metricsOn("shard");
  const routerMetrics = await metricsOn("router");
  const metrics = { shard: shardMetrics.endpoint, router: routerMetrics.endpoint };
  const started: ServiceProcess[] = [];
  const rigs: Rig[] = [];
  try {
    const shard = await ServiceProcess.start("shard-a", "shard", shardAddress, {
      CODEQ_LOG_LEVEL: "warn",
      CODEQ_SHARD_ID: "a",
      CODEQ_SHARD_LISTEN: shardAddress,
      CODEQ_SHARD_METRICS_LISTEN: shardMetrics.listen,
      CODEQ_SHARD_REDIS_URL: ctx.server.url,
      CODEQ_SHARD_KEY_PREFIX: SHARD_PREFIX,
      CODEQ_SHARD_DEV_IDENTITY: "true",
      CODEQ_SHARD_GRACE_MS: "1000",
      CODEQ_SHARD_CONTROL_URL: ctx.server.url,
      CODEQ_SHARD_CONTROL_PREFIX: CONTROL_PREFIX,
      NODE_OPTIONS: process.env.CODEQ_BENCH_SHARD_NODE_OPTIONS ?? "",
    });
    started.push(shard);
    const router = await ServiceProcess.start("router", "router", routerAddress, {
      CODEQ_LOG_LEVEL: "warn",
      CODEQ_ROUTER_LISTEN: routerAddress,
      CODEQ_ROUTER_METRICS_LISTEN: routerMetrics.listen,
      CODEQ_ROUTER_CONTROL_URL: ctx.server.url,
      CODEQ_ROUTER_CONTROL_PREFIX: CONTROL_PREFIX,
      CODEQ_ROUTER_DEV_IDENTITY: "true",
      CODEQ_ROUTER_GRACE_MS: "1000",
      NODE_OPTIONS: process.env.CODEQ_BENCH_ROUTER_NODE_OPTIONS ?? "",
    });
    started.push(router);
    const processes = { shard: shard.pid, router: router.pid };
    const rigOf = (address: string) =>
      openRig(ctx, { scenario: "router", address, processes, metrics });
    const direct = rigOf(shardAddress);
    rigs.push(direct);
    const viaRouter = rigOf(routerAddress);
    rigs.push(viaRouter);
    /** The workload `name`, direct then via router, each on commands of its own. */
    const both = async (
      name: string,
      command: string,
      body: (rig: Rig, w: Workload) => Promise<VariantResult>,
    ): Promise<Pair> => [
      await body(direct, { name: `${name}, direct`, command: `${command}_DIRECT` }),
      await body(viaRouter, { name: `${name}, via router`, command: `${command}_ROUTER` }),
    ];

    /** `both`, then again in the other order; the four windows, and each side pooled. */
    const inTurns = async (
      name: string,
      command: string,
      body: (rig: Rig, w: Workload) => Promise<VariantResult>,
    ): Promise<{ windows: VariantResult[]; pooled: Pair }> => {
      const [d1, v1] = await both(name, command, body);
      const v2 = await body(viaRouter, {
        name: `${name}, via router, again`,
        command: `${command}_ROUTER_2`,
      });
      const d2 = await body(direct, {
        name: `${name}, direct, again`,
        command: `${command}_DIRECT_2`,
      });
      return {
        windows: [d1, v1, v2, d2],
        pooled: [
          pooled(`${d1.name} (both windows)`, d1, d2),
          pooled(`${v1.name} (both windows)`, v1, v2),
        ],
      };
    };

    const unary = await inTurns("unary batch cycles", "BENCH_UNARY", unaryCycles);
    const stream = await inTurns("stream cycles", "BENCH_STREAM", streamCycles);
    const peak = await both("enqueue 1 peak", "BENCH_ENQUEUE", enqueuePeak);
    // half the rate on each path, both at once
    const rate = (LATENCY_SHARE * peak[0].perSecond) / 2;
    const name = `enqueue 1 at ${LATENCY_SHARE * 100}%`;
    const { variants: latency, added } = await enqueueLatency(
      (address, clients) =>
        openRig(ctx, {
          scenario: "router",
          address,
          processes: { ...processes, clients },
          metrics,
        }),
      [shardAddress, routerAddress],
      [`${name}, direct`, `${name}, via router`],
      rate,
    );
    const deliveries: Array<{ via: Producer; pair: Pair }> = [];
    for (const via of ["EnqueueStream", "EnqueueBatch"] as const) {
      const at = (rig: "direct" | "via router"): Promise<VariantResult> =>
        deliveryLatency(ctx, {
          scenario: "router",
          address: rig === "direct" ? shardAddress : routerAddress,
          processes,
          metrics,
          rate: DELIVERY_SHARE * stream.pooled[0].perSecond,
          via,
          command: `BENCH_DELIVERY_${via === "EnqueueBatch" ? "BATCH" : "STREAM"}_${rig === "direct" ? "DIRECT" : "ROUTER"}`,
          name: `enqueue→delivery, ${via}, ${rig}`,
          rateNote: `${DELIVERY_SHARE * 100}% of direct stream peak`,
        });
      deliveries.push({ via, pair: [await at("direct"), await at("via router")] });
    }
    const variants = [
      ...unary.windows,
      ...stream.windows,
      ...peak,
      ...latency,
      ...deliveries.flatMap((d) => d.pair),
    ];
    // via router ÷ direct: the share of direct throughput left once the router is in the way
    // (a pooled pair's caveat names the windows other work disturbed, not their average)
    const share = (
      name: string,
      [d, v]: Pair,
      windows: readonly VariantResult[],
      target?: number,
    ) => {
      const r = ratio([d, v], name, v.name, d.name, target);
      const caveat = disturbed(windows);
      return caveat === undefined ? r : { ...r, caveat };
    };
    const ratios = [
      share("router cost, batched/unary", unary.pooled, unary.windows, THROUGHPUT_TARGET),
      share("router cost, streams", stream.pooled, stream.windows, THROUGHPUT_TARGET),
      share("router cost, enqueue 1 peak (info)", peak, peak),
    ];
    const addedP99 = latency[1].p99Ms - latency[0].p99Ms;
    const check: CheckResult = {
      name: `router added p99 at moderate load (${LATENCY_SHARE * 100}% of direct enqueue 1 peak, both paths at once)`,
      value: addedP99,
      unit: "ms",
      max: ADDED_P99_TARGET_MS,
      met: addedP99 < ADDED_P99_TARGET_MS,
      caveat: joinCaveats(disturbed(latency), fullGcCaveat(latency[1].gc)),
    };
    const figures = [
      ...[unary.pooled, stream.pooled, peak].map((pair) => routerCpuFigure(pair)),
      routerCpuFigure(latency, true),
      addedPerCall(added),
      ...deliveries.map((d) => addedDelivery(d.via, d.pair)),
    ];
    return { variants, ratios, checks: [check], figures };
  } finally {
    for (const r of rigs) r.close();
    for (const p of started.reverse()) await p.stop();
    await deleteUnder(ctx, CONTROL_PREFIX);
  }
}

export const routerScenario: Scenario = {
  name: "router",
  summary:
    "the same gRPC workloads direct to a shard worker and through a router: cost, added p99, router CPU",
  run,
};
