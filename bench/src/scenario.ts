import type { GcPauses } from "@codeq/common";
import type { RedisServer } from "@codeq/testing";
import type { Measurement } from "./measure";

/** What the command line chose for every scenario of a run. */
export interface BenchOptions {
  /** Measured seconds per variant. */
  readonly seconds: number;
  /** Warm-up seconds per variant (load runs, nothing is counted). */
  readonly warmupSeconds: number;
}

export interface ScenarioContext {
  readonly options: BenchOptions;
  /** The redis-server this run spawned for itself (on a free port). */
  readonly server: RedisServer;
  /** Shows what is running now ("engine batched: warm-up"). */
  progress(text: string): void;
}

/** One measured variant: what it did and how fast. */
export interface VariantResult extends Measurement {
  readonly name: string;
  /** What `units` counts, e.g. "cycles" or "tasks". */
  readonly unit: string;
  /** How a cycle is made, in a few words (the commands or calls). */
  readonly shape: string;
  /** Loops running cycles at once. */
  readonly concurrency: number;
  /**
   * CPU seconds per wall second during the window of other processes under test, by
   * name (e.g. `shard`, `router`), when measured. Printed as a `<name> CPU` column.
   */
  readonly processCpu?: Readonly<Record<string, number>>;
  /** RPCs the clients made during the window, when counted. */
  readonly rpcs?: number;
  /**
   * Garbage-collection pauses in the window, by process: `bench` (this process), the
   * services whose metrics the rig reads, and forked clients.
   */
  readonly gc?: Readonly<Record<string, GcPauses>>;
}

/** A ratio of two variants' rates, with the target it is held to, if any. */
export interface RatioResult {
  readonly name: string;
  readonly numerator: string;
  readonly denominator: string;
  readonly value: number;
  /** The least acceptable value; `met` says whether `value` reached it. */
  readonly target?: number;
  readonly met?: boolean;
  /** How it is printed: "percent" (the default, 73.1%) or "times" (2.31×). */
  readonly format?: "percent" | "times";
  /** Why the value may not be trusted (e.g. other work ran during a window), printed after it. */
  readonly caveat?: string;
}

/** A bound that is not a ratio, e.g. a latency limit: `value` must stay below `max`. */
export interface CheckResult {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  readonly max: number;
  readonly met: boolean;
  /** Why the value may not be trusted, printed after it. */
  readonly caveat?: string;
}

/** A figure with no target, printed below the table, e.g. the router's CPU per 1000 RPCs. */
export interface FigureResult {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** What it was computed from, in a few words. */
  readonly detail?: string;
}

export interface ScenarioResult {
  readonly variants: readonly VariantResult[];
  readonly ratios: readonly RatioResult[];
  readonly checks?: readonly CheckResult[];
  readonly figures?: readonly FigureResult[];
}

/** A ratio between variants of two scenarios, reported when both ran in one invocation. */
export interface CrossRatio {
  readonly name: string;
  /** "<scenario>: <variant>". */
  readonly numerator: string;
  readonly denominator: string;
  readonly target?: number;
}

/** A benchmark scenario: one file under scenarios/, registered in scenarios/index.ts. */
export interface Scenario {
  /** The name chosen on the command line (`npm run bench -- <name>`). */
  readonly name: string;
  /** One line for `--list`. */
  readonly summary: string;
  run(ctx: ScenarioContext): Promise<ScenarioResult>;
}

/** The ratio of two variants of `variants` by name, checked against `target` when given. */
export function ratio(
  variants: readonly VariantResult[],
  name: string,
  numerator: string,
  denominator: string,
  target?: number,
): RatioResult {
  const rate = (n: string) => {
    const v = variants.find((x) => x.name === n);
    if (!v) throw new Error(`no variant ${n}`);
    return v.perSecond;
  };
  const value = rate(denominator) > 0 ? rate(numerator) / rate(denominator) : 0;
  return target === undefined
    ? { name, numerator, denominator, value }
    : { name, numerator, denominator, value, target, met: value >= target };
}

/** The cross-scenario ratios whose two variants are both among `results` (keyed by scenario). */
export function crossRatios(
  results: ReadonlyMap<string, ScenarioResult>,
  specs: readonly CrossRatio[],
): RatioResult[] {
  const all = [...results].flatMap(([scenario, r]) =>
    r.variants.map((v) => ({ ...v, name: `${scenario}: ${v.name}` })),
  );
  const ran = (name: string) => all.some((v) => v.name === name);
  return specs
    .filter((c) => ran(c.numerator) && ran(c.denominator))
    .map((c) => ({
      ...ratio(all, c.name, c.numerator, c.denominator, c.target),
      format: "times" as const,
    }));
}

/** The caveats given, joined with "; ", or undefined when there are none. */
export function joinCaveats(...caveats: ReadonlyArray<string | undefined>): string | undefined {
  const given = caveats.filter((c) => c !== undefined);
  return given.length ? given.join("; ") : undefined;
}

/**
 * A caveat naming the processes with a full GC in the window (its pauses, and the
 * backlog behind them, sit in the window's tail), or undefined when none had one.
 */
export function fullGcCaveat(
  gc: Readonly<Record<string, GcPauses>> | undefined,
): string | undefined {
  const hit = Object.entries(gc ?? {}).filter(([, p]) => p.fullGcs > 0 || p.fullGcMs > 0);
  if (hit.length === 0) return undefined;
  const which = hit.map(([name, p]) =>
    p.fullGcs > 0
      ? `${name} (${p.fullGcs}, ${p.fullGcMs.toFixed(1)} ms reported)`
      : `${name} (marking started)`,
  );
  return `full GC in the window: ${which.join(", ")}`;
}
