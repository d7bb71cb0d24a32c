import { PerformanceObserver } from "node:perf_hooks";
import * as v8 from "node:v8";
import * as vm from "node:vm";

/** V8's `gc()` for this process, with `{ type: "minor" }` for a scavenge (it sets `--expose-gc`). */
export function exposeGc(): (options?: { type?: "minor"; execution?: "sync" }) => void {
  v8.setFlagsFromString("--expose-gc");
  return vm.runInNewContext("gc") as (options?: object) => void;
}

/**
 * Forces `minors` scavenges and then one full GC in a single turn of the event loop,
 * and waits until Node has handed their entries to performance observers (it hands
 * over every entry since an observer's last turn at once).
 *
 * Node 20 queues the hand-over on an unreferenced native immediate, which does not
 * keep the loop from waiting in its poll phase: left alone, the entries come with
 * whatever wakes the loop next, and a timer due then runs first (a fixed 50 ms wait
 * resolved before them on a loaded CI machine). So a referenced immediate is queued
 * after the GCs, and the wait is on an observer of its own: every observer's entries
 * are handed over in the same turn, so once this one has them all, so has the caller's.
 */
export async function forceGcsInOneTurn(minors: number, timeoutMs = 10_000): Promise<void> {
  const gc = exposeGc();
  let seen = 0;
  let timer: NodeJS.Timeout | undefined;
  let observer: PerformanceObserver | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      observer = new PerformanceObserver((list) => {
        seen += list.getEntries().length;
        if (seen >= minors + 1) resolve();
      });
      observer.observe({ entryTypes: ["gc"] });
      timer = setTimeout(
        () => reject(new Error(`${seen} of ${minors + 1} GC entries in ${timeoutMs} ms`)),
        timeoutMs,
      );
      for (let i = 0; i < minors; i++) gc({ type: "minor", execution: "sync" });
      gc(); // a full GC ({ type: "major" } gives a scavenge in Node 20)
      setImmediate(() => undefined); // wakes the loop for the hand-over
    });
  } finally {
    clearTimeout(timer);
    observer?.disconnect();
  }
}
