import { GcTally, gcPausesSince, NO_GC_PAUSES, type GcPauses } from "@codeq/common";
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
  const values = new Map<string, number>();
  const line = new RegExp(
    `^${e.prefix}nodejs_gc_duration_seconds_(sum|count)\\{kind="(\\w+)"\\} (\\S+)$`,
    "gm",
  );
  // a process that has not collected yet exports the histogram with no samples
  if (!text.includes(`# TYPE ${e.prefix}nodejs_gc_duration_seconds histogram`)) return undefined;
  for (const m of text.matchAll(line)) values.set(`${m[2]} ${m[1]}`, Number(m[3]));
  const v = (key: string) => values.get(key) ?? 0;
  return {
    scavenges: v("minor count"),
    scavengeMs: v("minor sum") * 1000,
    fullGcs: v("major count"),
    fullGcMs: (v("major sum") + v("incremental sum") + v("weakcb sum")) * 1000,
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
  const read = async (): Promise<Record<string, GcPauses>> => {
    const bench = benchGcTotals();
    const scraped = await Promise.all(
      Object.entries(services).map(async ([name, e]) => [name, await scrapeGcTotals(e)] as const),
    );
    const totals: Record<string, GcPauses> = { bench };
    for (const [name, p] of scraped) if (p) totals[name] = p;
    return totals;
  };
  let first: Record<string, GcPauses> = {};
  let window: Record<string, GcPauses> = {};
  return {
    before: async () => {
      first = await read();
    },
    after: async () => {
      const last = await read();
      window = Object.fromEntries(
        Object.entries(last)
          .filter(([name]) => name in first)
          .map(([name, p]) => [name, gcPausesSince(first[name] ?? NO_GC_PAUSES, p)]),
      );
    },
    pauses: () => window,
  };
}

/** "3 scavenges 4.1 ms, 1 full GC 12.0 ms" (or "no GC"). */
export function formatGcPauses(p: GcPauses): string {
  const parts: string[] = [];
  if (p.scavenges > 0) parts.push(`${p.scavenges} scavenges ${p.scavengeMs.toFixed(1)} ms`);
  if (p.fullGcs > 0 || p.fullGcMs > 0)
    parts.push(`${p.fullGcs} full GC${p.fullGcs === 1 ? "" : "s"} ${p.fullGcMs.toFixed(1)} ms`);
  return parts.length ? parts.join(", ") : "no GC";
}

/**
 * A caveat naming the processes that ran a full GC in the window (each such pause sits
 * in the window's tail), or undefined when none did.
 */
export function fullGcCaveat(
  gc: Readonly<Record<string, GcPauses>> | undefined,
): string | undefined {
  const hit = Object.entries(gc ?? {}).filter(([, p]) => p.fullGcs > 0);
  if (hit.length === 0) return undefined;
  const which = hit.map(([name, p]) => `${name} (${p.fullGcs}, ${p.fullGcMs.toFixed(1)} ms)`);
  return `full GC in the window: ${which.join(", ")}`;
}
