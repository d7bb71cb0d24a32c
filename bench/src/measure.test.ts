import { latencyFigures, measure, percentile } from "./measure";

describe("measure", () => {
  it("counts only what completes after the warm-up, and reports the rate", async () => {
    let calls = 0;
    const m = await measure({
      concurrency: 2,
      warmupMs: 100,
      durationMs: 200,
      cycle: async () => {
        calls++;
        await new Promise((r) => setTimeout(r, 5));
        return 10;
      },
    });
    expect(m.units).toBe(m.cycles * 10);
    expect(m.cycles).toBeGreaterThan(0);
    expect(m.cycles).toBeLessThan(calls); // the warm-up's cycles ran but were not counted
    expect(m.perSecond).toBeCloseTo(m.units / m.seconds);
  });

  it("counts a running total kept elsewhere, and opens and closes the window around it", async () => {
    let total = 0;
    const edges: boolean[] = [];
    const m = await measure({
      concurrency: 1,
      warmupMs: 50,
      durationMs: 200,
      units: () => total,
      onWindow: (open) => edges.push(open),
      cycle: async () => {
        total += 3;
        await new Promise((r) => setTimeout(r, 5));
        return 1000; // ignored: the total counts
      },
    });
    expect(edges).toEqual([true, false]);
    expect(m.units).toBeGreaterThan(0);
    expect(m.units % 3).toBe(0);
    expect(m.units).toBeLessThan(total); // the warm-up's units are not counted
  });

  it("reports how much each running total grew in the window, not in the warm-up", async () => {
    let started = 0;
    const m = await measure({
      concurrency: 2,
      warmupMs: 50,
      durationMs: 200,
      totals: { started: () => started, fixed: () => 7 },
      cycle: async () => {
        started++;
        await new Promise((r) => setTimeout(r, 5));
        return 1;
      },
    });
    expect(m.growth?.fixed).toBe(0);
    expect(m.growth?.started).toBeGreaterThan(0);
    expect(m.growth?.started).toBeLessThan(started);
    // cycles started in the window and cycles finished in it differ by those in flight at the edges
    expect(Math.abs(m.growth!.started! - m.cycles)).toBeLessThanOrEqual(2);
  });

  it("awaits `aroundWindow` before the window opens and after it closes", async () => {
    const events: string[] = [];
    const hook = (name: string) => async () => {
      await new Promise((r) => setTimeout(r, 200));
      events.push(name);
    };
    const m = await measure({
      concurrency: 1,
      warmupMs: 20,
      durationMs: 100,
      onWindow: (open) => events.push(open ? "open" : "close"),
      aroundWindow: { before: hook("before"), after: hook("after") },
      cycle: async () => {
        await new Promise((r) => setTimeout(r, 5));
        return 1;
      },
    });
    expect(events).toEqual(["before", "open", "close", "after"]);
    // neither hook's 200 ms is the window's
    expect(m.seconds).toBeLessThan(0.2);
  });

  it("closes the window when the promise `until` returned as it opened resolves", async () => {
    let cycles = 0;
    let atOpen: number | undefined;
    let done: () => void = () => undefined;
    const m = await measure({
      concurrency: 1,
      warmupMs: 20,
      durationMs: 600_000, // far beyond the test's timeout: only `until` can end this window
      cycle: async () => {
        if (++cycles === (atOpen ?? Infinity) + 5) done();
        await new Promise((r) => setTimeout(r, 1));
        return 1;
      },
      until: () => {
        atOpen = cycles;
        return new Promise<void>((r) => (done = r));
      },
    });
    expect(atOpen).toBeGreaterThan(0); // called after the warm-up, once
    expect(m.units).toBe(m.cycles);
    expect(m.cycles).toBeGreaterThanOrEqual(4);
  });

  it("rejects when the promise `until` returned rejects", async () => {
    const run = measure({
      concurrency: 1,
      warmupMs: 0,
      durationMs: 600_000,
      cycle: async () => {
        await new Promise((r) => setTimeout(r, 1));
        return 1;
      },
      until: () => Promise.reject(new Error("migration aborted")),
    });
    await expect(run).rejects.toThrow("migration aborted");
  });

  it("stops every loop and rejects when a cycle fails", async () => {
    let running = 0;
    const run = measure({
      concurrency: 4,
      warmupMs: 10_000,
      durationMs: 10_000,
      cycle: async () => {
        running++;
        await new Promise((r) => setTimeout(r, 1));
        running--;
        throw new Error("store down");
      },
    });
    await expect(run).rejects.toThrow("store down");
    expect(running).toBe(0);
  });
});

describe("percentile", () => {
  it("picks the value at the quantile of a sorted list", () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(values, 0.5)).toBe(51);
    expect(percentile(values, 0.99)).toBe(100);
    expect(percentile([], 0.5)).toBe(0);
  });
});

describe("latencyFigures", () => {
  it("counts unsorted latencies and takes their p50 and p99", () => {
    const values = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(latencyFigures(values)).toEqual({ cycles: 100, p50Ms: 51, p99Ms: 100 });
    expect(latencyFigures([])).toEqual({ cycles: 0, p50Ms: 0, p99Ms: 0 });
  });
});
