import { GcTally, gcPausesSince, type GcPauses } from "@codeq/common";
import { freePort } from "@codeq/testing";

/** A service's process metrics: its /metrics URL and the prefix of its process metrics. */
export interface MetricsEndpoint {
  readonly url: string;
  /** e.g. `codeq_shard_process_` (collectProcessMetrics). */
  readonly prefix: string;
}

/**
 * A free loopback address for a `service`'s metrics listener, and how the bench reads
 * its GC pauses there.
 */
export async function metricsOn(
  service: "shard" | "router",
): Promise<{ listen: string; endpoint: MetricsEndpoint }> {
  const listen = `127.0.0.1:${await freePort()}`;
  return {
    listen,
    endpoint: { url: `http://${listen}/metrics`, prefix: `codeq_${service}_process_` },
  };
}

/** How long a scrape at a window's edge may take before the process is left out, ms. */
const SCRAPE_TIMEOUT_MS = 2000;

/**
 * The running GC totals a service exports (`<prefix>nodejs_gc_duration_seconds{kind}`,
 * counted by collectProcessMetrics), or undefined when they cannot be read.
 */
export async function scrapeGcTotals(e: MetricsEndpoint): Promise<GcPauses | undefined> {
  let text: string;
  try {
    const res = await fetch(e.url, { signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS) });
    if (!res.ok) return undefined;
    text = await res.text();
  } catch {
    return undefined;
  }
  const name = `${e.prefix}nodejs_gc_duration_seconds`;
  if (!text.includes(`# TYPE ${name} histogram`)) return undefined;
  const sample = new RegExp(`^${name}_(sum|count)\\{([^}]*)\\} (\\S+)$`, "gm");
  const values = new Map<string, number>();
  let samples = 0;
  for (const [, field, labels, value] of text.matchAll(sample)) {
    samples++;
    const kind = /(?:^|,)kind="(\w+)"/.exec(labels!)?.[1];
    if (kind) values.set(`${kind} ${field}`, Number(value));
  }
  // no sample yet: a process that has not collected; samples without a kind: not ours to read
  if (samples > 0 && values.size === 0) return undefined;
  const v = (key: string) => values.get(key) ?? 0;
  return {
    scavenges: v("minor count"),
    scavengeMs: v("minor sum") * 1000,
    fullGcs: v("major count"),
    fullGcMs: (v("major sum") + v("incremental sum")) * 1000,
    weakCallbackMs: v("weakcb sum") * 1000,
  };
}

let benchTally: GcTally | undefined;

/** The bench process's own running GC totals (one observer for the whole run). */
export function benchGcTotals(): GcPauses {
  benchTally ??= new GcTally();
  return benchTally.totals;
}

/** GC pauses of the processes a variant involves, over its measured window. */
export interface WindowGc {
  /** Reads every process's totals just before the window opens. */
  before(): Promise<void>;
  /** Reads them again just after it closes. */
  after(): Promise<void>;
  /** Each process's pauses between the two (a service whose metrics could not be read is left out). */
  pauses(): Record<string, GcPauses>;
}

/**
 * Watches the bench process (as `bench`) and `services` (by name) over one window.
 * Services are scraped outside the window, so the scrape's own work is not in it; the
 * few milliseconds between an edge and its scrape may add a pause or take one away.
 */
export function watchWindowGc(services: Readonly<Record<string, MetricsEndpoint>>): WindowGc {
  const scrape = async (): Promise<Record<string, GcPauses>> => {
    const scraped = await Promise.all(
      Object.entries(services).map(async ([name, e]) => [name, await scrapeGcTotals(e)] as const),
    );
    return Object.fromEntries(scraped.filter((s): s is [string, GcPauses] => s[1] !== undefined));
  };
  let first: Record<string, GcPauses> = {};
  let window: Record<string, GcPauses> = {};
  return {
    before: async () => {
      const scraped = await scrape();
      first = { ...scraped, bench: benchGcTotals() }; // the bench's as near the edge as it can be
    },
    after: async () => {
      const bench = benchGcTotals();
      const last: Record<string, GcPauses> = { ...(await scrape()), bench };
      window = {};
      for (const [name, p] of Object.entries(last)) {
        const then = first[name];
        if (then) window[name] = gcPausesSince(then, p);
      }
    },
    pauses: () => window,
  };
}
