import { constants, PerformanceObserver } from "node:perf_hooks";

/** What V8 was doing in one garbage-collection pause, as Node names it. */
export type GcKind = "minor" | "major" | "incremental" | "weakcb";

/** V8's minor mark-compact (`--minor-mc`), which Node 20 has no constant for. */
const GC_MINOR_MARK_COMPACT = 2;

const KINDS: Readonly<Record<number, GcKind>> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: "minor",
  [GC_MINOR_MARK_COMPACT]: "minor",
  [constants.NODE_PERFORMANCE_GC_MAJOR]: "major",
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental",
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: "weakcb",
};

/**
 * Calls `onPause` with every garbage-collection pause Node reports for this process
 * from now on: its kind and length, ms. Node hands an observer its entries in batches
 * (all those since its last turn), and every entry of a batch is passed on: the pieces
 * of a full GC come together, as do scavenges that fell in one long turn. What Node
 * reports of a full GC is the start of its incremental marking (`incremental`), its
 * final pause (`major`) and, as after some scavenges, the weak callbacks (`weakcb`); the
 * marking steps in between run on the main thread too but are not reported
 * (`--trace-gc` shows them). Returns a function that stops observing.
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

/** Garbage-collection pauses over a span, as Node reports them (observeGcPauses). */
export interface GcPauses {
  /** Scavenges (young generation), and the sum of their pauses, ms. */
  readonly scavenges: number;
  readonly scavengeMs: number;
  /**
   * Full collections that finished (mark-compact), and the sum of the pauses Node
   * reports for full collections: marking starts and final pauses, ms. A full GC whose
   * marking started in the span but finished after it adds to the ms, not the count.
   * Its marking steps are not in it.
   */
  readonly fullGcs: number;
  readonly fullGcMs: number;
  /** Weak callbacks (after a full GC or a scavenge), ms. */
  readonly weakCallbackMs: number;
}

/** No pauses. */
export const NO_GC_PAUSES: GcPauses = Object.freeze({
  scavenges: 0,
  scavengeMs: 0,
  fullGcs: 0,
  fullGcMs: 0,
  weakCallbackMs: 0,
});

/** Adds one pause to `p`. */
export function addGcPause(p: GcPauses, kind: GcKind, ms: number): GcPauses {
  switch (kind) {
    case "minor":
      return { ...p, scavenges: p.scavenges + 1, scavengeMs: p.scavengeMs + ms };
    case "major":
      return { ...p, fullGcs: p.fullGcs + 1, fullGcMs: p.fullGcMs + ms };
    case "incremental":
      return { ...p, fullGcMs: p.fullGcMs + ms };
    case "weakcb":
      return { ...p, weakCallbackMs: p.weakCallbackMs + ms };
  }
}

/** The pauses between two running totals of one process: `later` less `earlier`. */
export function gcPausesSince(earlier: GcPauses, later: GcPauses): GcPauses {
  return {
    scavenges: later.scavenges - earlier.scavenges,
    scavengeMs: later.scavengeMs - earlier.scavengeMs,
    fullGcs: later.fullGcs - earlier.fullGcs,
    fullGcMs: later.fullGcMs - earlier.fullGcMs,
    weakCallbackMs: later.weakCallbackMs - earlier.weakCallbackMs,
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
