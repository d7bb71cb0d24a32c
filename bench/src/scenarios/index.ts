import type { Scenario } from "../scenario";
import { engineScenario } from "./engine";

/** Every scenario, in the order `npm run bench` runs them. Add a new one here. */
export const SCENARIOS: readonly Scenario[] = [engineScenario];
