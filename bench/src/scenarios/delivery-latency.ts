import type { MetricsEndpoint } from "../gc-watch";
import { latencyFigures } from "../measure";
import type { ScenarioContext, VariantResult } from "../scenario";
import { checkEvery, openRig } from "./grpc-rig";
import type { Producer } from "./grpc-workloads";
import { startLatencyClient } from "./latency-client";

/** The paced producer sends every LATENCY_INTERVAL_MS as many tasks as the rate asks. */
export const LATENCY_INTERVAL_MS = 2;
/**
 * The least warm-up of a latency variant, s. Its clients start in a fresh process, whose
 * JIT compiles their per-message code for about the first 4 s at this rate (on a
 * background thread, taking a core from the four busy processes); a window opened after
 * the run's usual 1 s measured that warm-up, not the queue (docs/performance.md,
 * "Warm-up of the latency clients"). Counted from the fork, start-up included.
 */
export const LATENCY_WARMUP_SECONDS = 5;

/** One enqueue→delivery variant: where its clients call, and what it is called. */
export interface DeliveryLatency {
  readonly scenario: string;
  /** The address the producer and the stream workers call (a shard worker or a router). */
  readonly address: string;
  /** Processes whose CPU the variant reports, by name. */
  readonly processes: Readonly<Record<string, number | undefined>>;
  /** Services whose GC pauses the variant reports, by name (RigOptions.metrics). */
  readonly metrics?: Readonly<Record<string, MetricsEndpoint>>;
  /** Tasks a second the producer offers. */
  readonly rate: number;
  readonly via: Producer;
  readonly command: string;
  readonly name: string;
  /** How the rate was chosen, e.g. "50% of stream peak". */
  readonly rateNote: string;
}

/**
 * Enqueue→delivery at a paced rate: one producer sends, every LATENCY_INTERVAL_MS, the
 * tasks the rate asks for, without waiting for answers (open loop), and stream workers
 * read each task's send time from its payload; both in a process of their own
 * (latency-client.ts). p50/p99 of the variant are enqueue→delivery.
 */
export async function deliveryLatency(
  ctx: ScenarioContext,
  d: DeliveryLatency,
): Promise<VariantResult> {
  const batch = Math.max(1, Math.round((d.rate * LATENCY_INTERVAL_MS) / 1000));
  const shape = `${d.via} of ${batch} tasks every ${LATENCY_INTERVAL_MS} ms (${d.rateNote}), not waiting for answers, clients in a process of their own, warmed ≥ ${LATENCY_WARMUP_SECONDS} s; p50/p99 = enqueue→delivery`;
  const v = { name: d.name, unit: "tasks", shape, concurrency: 1 };
  const clients = startLatencyClient({
    address: d.address,
    command: d.command,
    batch,
    intervalMs: LATENCY_INTERVAL_MS,
    via: d.via,
  });
  const rig = openRig(ctx, {
    scenario: d.scenario,
    address: d.address,
    processes: { ...d.processes, clients: clients.pid },
    metrics: d.metrics,
  });
  try {
    const m = await rig.run(v, {
      minWarmupSeconds: LATENCY_WARMUP_SECONDS,
      units: () => clients.count(),
      onWindow: (open) => clients.window(open),
      cycle: checkEvery(() => clients.check()),
    });
    const figures = latencyFigures(await clients.stop());
    const own = clients.gcInWindow;
    return { ...m, ...figures, gc: own ? { ...m.gc, clients: own } : m.gc };
  } finally {
    rig.close();
    await clients.close();
  }
}
