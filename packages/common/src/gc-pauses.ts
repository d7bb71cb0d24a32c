import { constants, PerformanceObserver } from "node:perf_hooks";

/** What V8 was doing in one garbage-collection pause, as Node names it. */
export type GcKind = "minor" | "major" | "incremental" | "weakcb";

const KINDS: Readonly<Record<number, GcKind>> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: "minor",
  [constants.NODE_PERFORMANCE_GC_MAJOR]: "major",
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental",
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: "weakcb",
};

/**
 * Calls `onPause` with every garbage-collection pause of this process from now on: its
 * kind and length, ms. Node hands an observer its entries in batches (all those since
 * its last turn), and every entry of a batch is passed on: a full GC's incremental steps,
 * its final pause and its weak callbacks come together, as do scavenges that fell in
 * one long turn. Returns a function that stops observing.
 */
export function observeGcPauses(onPause: (kind: GcKind, ms: number) => void): () => void {
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const detail = (entry as { detail?: unknown }).detail as { kind?: number } | undefined;
      const kind = KINDS[detail?.kind ?? -1];
      if (kind) onPause(kind, entry.duration);
    }
  });
  observer.observe({ entryTypes: ["gc"] });
  return () => observer.disconnect();
}

/** Garbage-collection pauses over a span: young-generation and full collections apart. */
export interface GcPauses {
  /** Scavenges (young generation), and the sum of their pauses, ms. */
  readonly scavenges: number;
  readonly scavengeMs: number;
  /**
   * Full collections (mark-compact), and the sum of every pause they made on the main
   * thread (incremental marking steps and weak callbacks with the final pause), ms.
   */
  readonly fullGcs: number;
  readonly fullGcMs: number;
}

/** No pauses. */
export const NO_GC_PAUSES: GcPauses = Object.freeze({
  scavenges: 0,
  scavengeMs: 0,
  fullGcs: 0,
  fullGcMs: 0,
});

/** Adds one pause to `p`. */
export function addGcPause(p: GcPauses, kind: GcKind, ms: number): GcPauses {
  return kind === "minor"
    ? { ...p, scavenges: p.scavenges + 1, scavengeMs: p.scavengeMs + ms }
    : { ...p, fullGcs: p.fullGcs + (kind === "major" ? 1 : 0), fullGcMs: p.fullGcMs + ms };
}

/** The pauses between two running totals of one process: `later` less `earlier`. */
export function gcPausesSince(earlier: GcPauses, later: GcPauses): GcPauses {
  return {
    scavenges: later.scavenges - earlier.scavenges,
    scavengeMs: later.scavengeMs - earlier.scavengeMs,
    fullGcs: later.fullGcs - earlier.fullGcs,
    fullGcMs: later.fullGcMs - earlier.fullGcMs,
  };
}

/**
 * This process's pauses from its creation on, as a running total (`totals`); a
 * window's are `gcPausesSince` of the totals at its two edges.
 */
export class GcTally {
  private sum = NO_GC_PAUSES;
  readonly stop = observeGcPauses((kind, ms) => (this.sum = addGcPause(this.sum, kind, ms)));

  get totals(): GcPauses {
    return this.sum;
  }
}
