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
 * over every entry since an observer's last turn at once), or `timeoutMs` passed.
 *
 * It waits on an observer of its own rather than a fixed time: on a loaded machine the
 * hand-over can come later than any fixed wait. Every observer's entries are handed
 * over in the same turn, so once this one has them all, so has the caller's.
 */
export async function forceGcsInOneTurn(minors: number, timeoutMs = 10_000): Promise<void> {
  const gc = exposeGc();
  let seen = 0;
  let timer: NodeJS.Timeout | undefined;
  let observer: PerformanceObserver | undefined;
  try {
    await new Promise<void>((resolve) => {
      observer = new PerformanceObserver((list) => {
        seen += list.getEntries().length;
        if (seen >= minors + 1) resolve();
      });
      observer.observe({ entryTypes: ["gc"] });
      timer = setTimeout(resolve, timeoutMs);
      for (let i = 0; i < minors; i++) gc({ type: "minor", execution: "sync" });
      gc(); // a full GC ({ type: "major" } gives a scavenge in Node 20)
    });
  } finally {
    clearTimeout(timer);
    observer?.disconnect();
  }
}
