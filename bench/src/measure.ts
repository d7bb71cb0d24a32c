import { setTimeout as sleep } from "node:timers/promises";

/** One round of a load loop; resolves to how many units (cycles, tasks) it completed. */
export type Cycle = () => Promise<number>;

export interface MeasureOptions {
  /** Loops running `cycle` at once. */
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly cycle: Cycle;
  /** Cumulative CPU seconds of the server under test, read at both edges of the window. */
  readonly serverCpu?: () => Promise<number>;
  /** Told the phase and, once a second while measuring, the running rate. */
  readonly progress?: (text: string) => void;
  /**
   * A running total counted elsewhere (e.g. acks a stream worker sent): when given,
   * the window's units are its growth, and what the cycles return is ignored.
   */
  readonly units?: () => number;
  /** Called as the measured window opens (true) and closes (false), e.g. to keep samples taken in it. */
  readonly onWindow?: (open: boolean) => void;
  /**
   * Called as the window opens; the window closes when the promise it returns resolves
   * (e.g. an operation started in it finished) or after `durationMs`, whichever comes
   * first. A rejection fails the measurement as a failing cycle does.
   */
  readonly until?: () => Promise<unknown>;
  /**
   * Running totals kept elsewhere (e.g. another process's CPU seconds, RPCs sent), read
   * at both edges of the window with the units; the result's `growth` has each one's increase.
   */
  readonly totals?: Readonly<Record<string, () => number>>;
  /**
   * Awaited just before the window opens and just after it closes (e.g. reading another
   * process's metrics, whose scrape should not load the window).
   */
  readonly aroundWindow?: { before(): Promise<void>; after(): Promise<void> };
}

export interface Measurement {
  /** Units completed inside the measured window. */
  readonly units: number;
  readonly seconds: number;
  readonly perSecond: number;
  /** Cycles completed inside the window, and their latency percentiles. */
  readonly cycles: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** CPU seconds per wall second of this (client) process during the window. */
  readonly clientCpu: number;
  /** The same for the server, when `serverCpu` was given. */
  readonly serverCpu?: number;
  /** How much each of `totals` grew during the window, when they were given. */
  readonly growth?: Readonly<Record<string, number>>;
}

/**
 * Runs `concurrency` loops of `cycle` for a warm-up, then counts what completes
 * during `durationMs`. A cycle that fails stops every loop and rejects.
 */
export async function measure(o: MeasureOptions): Promise<Measurement> {
  let phase: "warmup" | "measure" | "stop" = "warmup";
  let units = 0;
  const latencies: number[] = [];
  let failure: { err: unknown } | undefined;
  let fail: (err: unknown) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => (fail = reject));
  failed.catch(() => undefined);
  const abort = new AbortController();
  /** Sleeps until `ms` from now, or rejects as soon as a loop fails. */
  const wait = (ms: number) =>
    Promise.race([sleep(Math.max(0, ms), undefined, { signal: abort.signal }), failed]);
  let ended = false;
  let endWindow: () => void = () => undefined;
  const endedEarly = new Promise<void>((resolve) => (endWindow = resolve));
  /** Like `wait`, but also returns as soon as `until` says the window is over. */
  const waitInWindow = (ms: number) => Promise.race([wait(ms), endedEarly]);
  const loop = async () => {
    while (phase !== "stop") {
      const started = performance.now();
      const n = await o.cycle();
      if (phase === "measure") {
        if (!o.units) units += n;
        latencies.push(performance.now() - started);
      }
    }
  };
  const loops = Array.from({ length: o.concurrency }, () =>
    loop().catch((err: unknown) => {
      phase = "stop";
      failure ??= { err };
      fail(err);
    }),
  );
  try {
    o.progress?.(`warm-up ${o.warmupMs / 1000} s`);
    await wait(o.warmupMs);
    await Promise.race([o.aroundWindow?.before(), failed]);
    phase = "measure";
    o.onWindow?.(true);
    const units0 = o.units?.() ?? 0;
    const totals0 = readTotals(o.totals);
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const server0 = await Promise.race([o.serverCpu?.(), failed]);
    const counted = () => (o.units ? o.units() - units0 : units);
    o.until?.().then(
      () => {
        ended = true;
        endWindow();
      },
      (err: unknown) => {
        phase = "stop";
        failure ??= { err };
        fail(err);
      },
    );
    for (let s = 1; s * 1000 <= o.durationMs && !ended; s++) {
      await waitInWindow(t0 + s * 1000 - performance.now());
      if (!ended) o.progress?.(`measuring ${s}/${o.durationMs / 1000} s: ${fmt(counted() / s)}/s`);
    }
    if (!ended) await waitInWindow(t0 + o.durationMs - performance.now());
    phase = "stop";
    units = counted();
    const totals1 = readTotals(o.totals);
    o.onWindow?.(false);
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const server1 = await o.serverCpu?.();
    await o.aroundWindow?.after();
    await Promise.all(loops);
    if (failure) throw failure.err;
    latencies.sort((a, b) => a - b);
    const result: Measurement = {
      units,
      seconds,
      perSecond: units / seconds,
      cycles: latencies.length,
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
      clientCpu: (cpu.user + cpu.system) / 1e6 / seconds,
    };
    const withServer =
      server0 !== undefined && server1 !== undefined
        ? { ...result, serverCpu: (server1 - server0) / seconds }
        : result;
    if (!totals0 || !totals1) return withServer;
    const growth = Object.fromEntries(
      Object.entries(totals1).map(([name, v]) => [name, v - (totals0[name] ?? 0)]),
    );
    return { ...withServer, growth };
  } finally {
    phase = "stop";
    abort.abort();
    await Promise.all(loops);
  }
}

function readTotals(totals: MeasureOptions["totals"]): Record<string, number> | undefined {
  return totals && Object.fromEntries(Object.entries(totals).map(([name, read]) => [name, read()]));
}

/** The p-quantile (0..1) of ascending `sorted`; 0 when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/** How many latencies, and their p50 and p99 (sorts `ms` in place). */
export function latencyFigures(ms: number[]): { cycles: number; p50Ms: number; p99Ms: number } {
  ms.sort((a, b) => a - b);
  return { cycles: ms.length, p50Ms: percentile(ms, 0.5), p99Ms: percentile(ms, 0.99) };
}

/** A whole number with thousands separators. */
export function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}
