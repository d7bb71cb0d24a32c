import { setTimeout as sleep } from "node:timers/promises";
import { LoadGauge } from "./load-gauge";

/** Keeps the event loop busy for `ms` (no I/O, no timers run meanwhile). */
function spin(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy
  }
}

describe("LoadGauge", () => {
  let gauge: LoadGauge;
  afterEach(() => gauge.stop());

  test("reads high right after the loop was kept busy, and low once it idles", async () => {
    gauge = new LoadGauge(100);
    await sleep(150); // one period of idling first
    spin(600);
    // the period in progress holds the whole spin and the idling since the last tick
    // before it (under 100 ms, or a few hundred on a crowded machine)
    expect(gauge.busy()).toBeGreaterThan(0.6);

    await sleep(350); // three periods with nothing to do
    expect(gauge.busy()).toBeLessThan(0.5);
    expect(gauge.busy()).toBeGreaterThanOrEqual(0);
  });

  test("a short burst weighs by its share of the period, not of the time since the last tick", () => {
    gauge = new LoadGauge(100);
    spin(30); // right after the gauge's first mark: 30 ms busy of the last 100
    const busy = gauge.busy();
    expect(busy).toBeGreaterThan(0.2);
    expect(busy).toBeLessThan(0.5);
  });

  test("an idle process reads low from the start", async () => {
    gauge = new LoadGauge(100);
    await sleep(250);
    expect(gauge.busy()).toBeLessThan(0.5);
  });
});
