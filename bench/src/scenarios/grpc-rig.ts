import { setTimeout as sleep } from "node:timers/promises";
import {
  createChannel,
  createClientFactory,
  Metadata,
  type Channel,
  type ChannelCredentials,
  type ClientFactory,
  type ChannelOptions,
} from "nice-grpc";
import { QueueServiceDefinition, type QueueServiceClient } from "@codeq/proto";
import { countRpcs } from "../count-rpcs";
import { watchWindowGc, type MetricsEndpoint } from "../gc-watch";
import { redisCpuSeconds } from "../environment";
import { measure, type Cycle, type MeasureOptions } from "../measure";
import { machineBusySeconds, machineInterruptSeconds, processCpuSeconds } from "../process-cpu";
import type { ScenarioContext, VariantResult } from "../scenario";

/** The tenant every benchmark client states (the services run with development identity). */
export const TENANT = "bench";
/** gRPC channels (HTTP/2 connections) per rig; clients take them in turn. */
export const CHANNELS = 4;
/** Other work using more than this share of a core during a window makes its numbers suspect. */
export const DISTURBED_CPU = 0.1;

export interface RigOptions {
  /** The scenario's name, for the progress line. */
  readonly scenario: string;
  /** The gRPC address the clients call (a shard worker or a router). */
  readonly address: string;
  /**
   * Processes under test whose CPU each variant reports, by name (e.g. `shard` → its
   * PID); with them comes `other`: the CPU everything else on the machine used.
   */
  readonly processes?: Readonly<Record<string, number | undefined>>;
  /**
   * Services whose process metrics each variant reads for its GC pauses, by name (with
   * the bench's own, as `bench`, these are the variant's `gc`).
   */
  readonly metrics?: Readonly<Record<string, MetricsEndpoint>>;
  /** Channel credentials (TLS); plaintext when unset. */
  readonly credentials?: ChannelCredentials;
  /** grpc-js channel options (e.g. the TLS server name to check). */
  readonly channelOptions?: ChannelOptions;
  /** Metadata every call sends; default `x-codeq-tenant: TENANT` (development identity). */
  readonly metadata?: Readonly<Record<string, string>>;
}

/** How `Rig.run` measures a variant: the run's window, with the run's warm-up unless told. */
export type RunOptions = Omit<
  MeasureOptions,
  "warmupMs" | "durationMs" | "serverCpu" | "concurrency" | "totals"
> & {
  /** At least this much warm-up, s, whatever the run's own (a process that starts cold). */
  readonly minWarmupSeconds?: number;
  /**
   * Whether to read the GC pauses of the bench and of `metrics` over the window (default
   * true). Of two runs measured at once, one reads them, or each would scrape the
   * services inside the other's window.
   */
  readonly watchGc?: boolean;
};

/** Clients of one address (round-robin over its channels) and the harness that measures them. */
export interface Rig {
  client(): QueueServiceClient;
  run(
    v: Pick<VariantResult, "name" | "unit" | "shape" | "concurrency">,
    o: RunOptions,
  ): Promise<VariantResult>;
  /** Closes the channels and the rig's redis connection. */
  close(): void;
}

/**
 * Opens CHANNELS channels to `address` (with `credentials`, if any) with clients stating
 * tenant TENANT (or sending `metadata`), and a harness that measures a variant over
 * them with the run's warm-up and window. Each variant reports the redis-server's CPU,
 * the CPU of every one of `processes` (read from /proc), and the RPCs its clients made
 * in the window, and the GC pauses in it of the bench and of every one of `metrics`. When `processes` are
 * named it also reports `kernel irq`, the machine's interrupt time (on loopback mostly
 * the kernel moving these processes' packets, which no process's CPU includes), and
 * `other`: the machine's busy CPU less the bench, the redis-server, those processes and
 * the interrupts, which shows a window disturbed by other work.
 */
export function openRig(ctx: ScenarioContext, options: RigOptions): Rig {
  let rpcs = 0;
  const processes = Object.entries(options.processes ?? {});
  const totals: Record<string, () => number> = { rpcs: () => rpcs };
  if (processes.length > 0) {
    totals.machine = machineBusySeconds;
    totals.interrupts = machineInterruptSeconds;
  }
  for (const [name, pid] of processes) {
    if (pid === undefined) throw new Error(`${name} is not running`);
    totals[`${name} cpu`] = () => processCpuSeconds(pid);
  }
  const clients = roundRobinClients(options, createClientFactory().use(countRpcs(() => rpcs++)));
  const admin = ctx.server.client();
  admin.on("error", () => undefined);
  return {
    client: clients.client,
    async run(v, { minWarmupSeconds = 0, watchGc = true, ...o }) {
      const gc = watchGc ? watchWindowGc(options.metrics ?? {}) : undefined;
      const { growth, ...m } = await measure({
        concurrency: v.concurrency,
        ...o,
        warmupMs: Math.max(ctx.options.warmupSeconds, minWarmupSeconds) * 1000,
        durationMs: ctx.options.seconds * 1000,
        serverCpu: () => redisCpuSeconds(admin),
        totals,
        aroundWindow: gc,
        progress: (text) => ctx.progress(`${options.scenario}: ${v.name}: ${text}`),
      });
      const processCpu: Record<string, number> = Object.fromEntries(
        processes.map(([name]) => [name, (growth?.[`${name} cpu`] ?? 0) / m.seconds]),
      );
      if (growth?.machine !== undefined) {
        const ours = Object.values(processCpu).reduce((a, b) => a + b, 0);
        // the kernel's packet work for the processes under test (counted in none of them)
        const interrupts = (growth.interrupts ?? 0) / m.seconds;
        const known = m.clientCpu + (m.serverCpu ?? 0) + ours + interrupts;
        processCpu["kernel irq"] = interrupts;
        // tick-granular readers taken microseconds apart: a small negative is zero
        processCpu.other = Math.max(0, growth.machine / m.seconds - known);
      }
      return { ...v, ...m, processCpu, rpcs: growth?.rpcs ?? 0, gc: gc?.pauses() };
    },
    close() {
      clients.close();
      admin.disconnect();
    },
  };
}

/**
 * CHANNELS channels to `options.address` (with its credentials, if any), a client on
 * each made by `factory`, stating tenant TENANT (or sending `options.metadata`), taken
 * in turn.
 */
export function roundRobinClients(
  options: Pick<RigOptions, "address" | "credentials" | "channelOptions" | "metadata">,
  factory: ClientFactory = createClientFactory(),
): { client(): QueueServiceClient; close(): void } {
  const metadata = new Metadata(options.metadata ?? { "x-codeq-tenant": TENANT });
  const channels: Channel[] = Array.from({ length: CHANNELS }, () =>
    createChannel(options.address, options.credentials, options.channelOptions),
  );
  const clients = channels.map((c) =>
    factory.create(QueueServiceDefinition, c, { "*": { metadata } }),
  );
  let turn = 0;
  return {
    client: () => clients[turn++ % clients.length]!,
    close: () => {
      for (const c of channels) c.close();
    },
  };
}

/** How often the cycle of a variant whose clients count for themselves checks them, ms. */
export const CHECK_MS = 50;

/**
 * The cycle of a variant whose clients run on their own and count its units
 * themselves (a paced producer, a forked process): every CHECK_MS, `check` throws
 * their first failure.
 */
export function checkEvery(check: () => void): Cycle {
  return async () => {
    check();
    await sleep(CHECK_MS);
    return 0;
  };
}

/**
 * A caveat naming the variants whose window other work disturbed (their `other` CPU
 * above DISTURBED_CPU), or undefined when none was.
 */
export function disturbed(variants: readonly VariantResult[]): string | undefined {
  const hit = variants.filter((v) => (v.processCpu?.other ?? 0) > DISTURBED_CPU);
  if (hit.length === 0) return undefined;
  const which = hit.map((v) => `${v.name} ${(v.processCpu!.other! * 100).toFixed(0)}%`);
  return `disturbed: other work used CPU during ${which.join(", ")}`;
}

/** CPU ms of process `name` per 1000 RPCs the clients made in `v`'s window. */
export function cpuPerThousand(v: VariantResult, name: string): number {
  const rpcs = v.rpcs ?? 0;
  return rpcs > 0 ? ((v.processCpu?.[name] ?? 0) * v.seconds * 1e6) / rpcs : 0;
}
