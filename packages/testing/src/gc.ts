import * as v8 from "node:v8";
import * as vm from "node:vm";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * Forces `minors` scavenges and then one full GC in a single turn of the event loop,
 * and waits until Node has handed their entries to performance observers (it hands
 * over every entry since an observer's last turn at once).
 */
export async function forceGcsInOneTurn(minors: number): Promise<void> {
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as (o?: object) => void;
  for (let i = 0; i < minors; i++) gc({ type: "minor", execution: "sync" });
  gc(); // a full GC ({ type: "major" } gives a scavenge in Node 20)
  await sleep(50);
}
