import { measureRoundTrip } from "./round-trip";

describe("measureRoundTrip", () => {
  it("measures the CPU and latency of paced round trips to an echo process", async () => {
    const r = await measureRoundTrip(100, 1);
    // a round trip wakes both processes: it cannot be free, nor take a second
    expect(r.cpuMicros).toBeGreaterThan(0);
    expect(r.cpuMicros).toBeLessThan(1_000_000);
    expect(r.latencyP50Micros).toBeGreaterThan(0);
    expect(r.latencyP50Micros).toBeLessThan(1_000_000);
  });
});
