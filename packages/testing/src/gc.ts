import * as v8 from "node:v8";
import * as vm from "node:vm";
import { setTimeout as sleep } from "node:timers/promises";

/** V8's `gc()` for this process, with `{ type: "minor" }` for a scavenge (it sets `--expose-gc`). */
export function exposeGc(): (options?: { type?: "minor"; execution?: "sync" }) => void {
  v8.setFlagsFromString("--expose-gc");
  return vm.runInNewContext("gc") as (options?: object) => void;
}

/**
 * Forces `minors` scavenges and then one full GC in a single turn of the event loop,
 * and waits until Node has handed their entries to performance observers (it hands
 * over every entry since an observer's last turn at once).
 */
export async function forceGcsInOneTurn(minors: number): Promise<void> {
  const gc = exposeGc();
  for (let i = 0; i < minors; i++) gc({ type: "minor", execution: "sync" });
  gc(); // a full GC ({ type: "major" } gives a scavenge in Node 20)
  await sleep(50);
}
