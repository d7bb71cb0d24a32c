import { formatResult } from "./report";
import { crossRatios, type ScenarioResult, type VariantResult } from "./scenario";

const variant = (name: string, perSecond: number): VariantResult => ({
  name,
  unit: "tasks",
  shape: "",
  concurrency: 1,
  units: perSecond,
  seconds: 1,
  perSecond,
  cycles: 0,
  p50Ms: 0,
  p99Ms: 0,
  clientCpu: 0,
});

const SPEC = [{ name: "x", numerator: "a: fast", denominator: "b: slow", target: 2 }];

describe("crossRatios", () => {
  it("compares variants of two scenarios when both ran, against the target", () => {
    const results = new Map<string, ScenarioResult>([
      ["a", { variants: [variant("fast", 50)], ratios: [] }],
      ["b", { variants: [variant("slow", 20)], ratios: [] }],
    ]);
    expect(crossRatios(results, SPEC)).toEqual([
      expect.objectContaining({ value: 2.5, target: 2, met: true, format: "times" }),
    ]);
  });

  it("reports nothing when one side did not run", () => {
    const results = new Map([["a", { variants: [variant("fast", 50)], ratios: [] }]]);
    expect(crossRatios(results, SPEC)).toEqual([]);
  });
});

describe("formatResult", () => {
  it("prints '-' for latencies a variant did not measure, and every check with its verdict", () => {
    const text = formatResult("s", {
      variants: [variant("drain", 10)],
      ratios: [],
      checks: [{ name: "p99", value: 6.5, unit: "ms", max: 5, met: false }],
    });
    expect(text).toMatch(/s: drain\s+10\s+tasks\/s\s+10\s+-\s+-/);
    expect(text).toContain("p99 = 6.50 ms  (target < 5 ms: MISSED)");
  });
});
