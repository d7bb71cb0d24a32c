import { NO_GC_PAUSES } from "@codeq/common";
import { formatGcPauses, formatResult } from "./report";
import {
  crossRatios,
  fullGcCaveat,
  joinCaveats,
  type ScenarioResult,
  type VariantResult,
} from "./scenario";

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

  it("adds a CPU column per other process a variant measured, and prints figures", () => {
    const text = formatResult("s", {
      variants: [
        variant("direct", 10),
        { ...variant("via", 8), processCpu: { shard: 0.5, router: 0.25 } },
      ],
      ratios: [],
      figures: [{ name: "router CPU per 1000 RPCs", value: 12.345, unit: "ms", detail: "0.1 s" }],
    });
    const [header, , direct, via] = text.split("\n");
    expect(header).toMatch(/redis CPU\s+shard CPU\s+router CPU$/);
    expect(direct).toMatch(/s: direct .*-\s+-\s+-$/);
    expect(via).toMatch(/s: via .*-\s+50\.0%\s+25\.0%$/);
    expect(text).toContain("router CPU per 1000 RPCs = 12.35 ms  (0.1 s)");
  });

  it("prints a caveat after a ratio or check that may not be trusted", () => {
    const text = formatResult("s", {
      variants: [variant("a", 9), variant("b", 10)],
      ratios: [{ name: "r", numerator: "a", denominator: "b", value: 0.9, caveat: "noisy" }],
      checks: [{ name: "c", value: 2, unit: "ms", max: 1, met: false, caveat: "noisy too" }],
    });
    expect(text).toContain("r = a / b = 90.0%  [noisy]");
    expect(text).toContain("c = 2.00 ms  (target < 1 ms: MISSED)  [noisy too]");
  });

  it("adds no process columns when no variant measured another process", () => {
    const text = formatResult("s", { variants: [variant("drain", 10)], ratios: [] });
    expect(text.split("\n")[0]).toMatch(/redis CPU$/);
  });
});

describe("GC pauses in the report", () => {
  const some = { scavenges: 3, scavengeMs: 4.12, fullGcs: 1, fullGcMs: 12, weakCallbackMs: 0 };

  it("says what a window held", () => {
    expect(formatGcPauses(NO_GC_PAUSES)).toBe("no GC");
    expect(formatGcPauses(some)).toBe("3 scavenges 4.1 ms, 1 full GC 12.0 ms");
    expect(formatGcPauses({ ...NO_GC_PAUSES, scavenges: 1, scavengeMs: 1, fullGcMs: 2 })).toBe(
      "1 scavenge 1.0 ms, full GC marking started 2.0 ms",
    );
    expect(formatGcPauses({ ...NO_GC_PAUSES, weakCallbackMs: 0.5 })).toBe("weak callbacks 0.5 ms");
  });

  it("prints a line per variant whose services were read, not for the bench's alone", () => {
    const result: ScenarioResult = {
      variants: [
        { ...variant("read", 1), gc: { bench: NO_GC_PAUSES, shard: some } },
        { ...variant("bench only", 1), gc: { bench: some } },
        variant("none", 1),
      ],
      ratios: [],
    };
    const gcLines = formatResult("s", result)
      .split("\n")
      .filter((l) => l.startsWith("GC pauses"));
    expect(gcLines).toEqual([
      "GC pauses in s: read: bench no GC; shard 3 scavenges 4.1 ms, 1 full GC 12.0 ms",
    ]);
  });

  it("names the processes with a full GC in a check's caveat", () => {
    expect(fullGcCaveat(undefined)).toBeUndefined();
    expect(fullGcCaveat({ shard: { ...some, fullGcs: 0, fullGcMs: 0 } })).toBeUndefined();
    expect(fullGcCaveat({ shard: some, clients: NO_GC_PAUSES })).toBe(
      "full GC in the window: shard (1, 12.0 ms reported)",
    );
    expect(fullGcCaveat({ router: { ...NO_GC_PAUSES, fullGcMs: 0.4 } })).toBe(
      "full GC in the window: router (marking started)",
    );
  });

  it("joins the caveats there are", () => {
    expect(joinCaveats(undefined, undefined)).toBeUndefined();
    expect(joinCaveats("a", undefined, "b")).toBe("a; b");
  });
});
