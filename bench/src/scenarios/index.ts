import type { CrossRatio, Scenario } from "../scenario";
import { bullmqScenario } from "./bullmq";
import { engineScenario } from "./engine";
import { migrationScenario } from "./migration";
import { routerScenario } from "./router";
import { securityScenario } from "./security";
import { shardScenario } from "./shard";

/** Every scenario, in the order `npm run bench` runs them. Add a new one here. */
export const SCENARIOS: readonly Scenario[] = [
  engineScenario,
  shardScenario,
  routerScenario,
  migrationScenario,
  securityScenario,
  bullmqScenario,
];

/** Ratios across scenarios, printed after the last scenario when both sides ran. */
export const CROSS_RATIOS: readonly CrossRatio[] = [
  {
    // issue 4: codeQ's sustained stream cycle at least twice BullMQ's produce-and-process
    name: "codeQ vs BullMQ",
    numerator: "shard: stream cycles",
    denominator: "bullmq: produce+process",
    target: 2,
  },
];
