import {
  clockTicksPerSecond,
  machineBusySeconds,
  processCpuSeconds,
  statBusyTicks,
  statInterruptTicks,
  statCpuTicks,
} from "./process-cpu";

/** A /proc/<pid>/stat line with `comm` as the command name and utime 1234, stime 56. */
const stat = (comm: string) =>
  `4242 (${comm}) S 1 4242 4242 0 -1 4194560 27166 0 12 0 1234 56 0 0 20 0 11 0 898194 ` +
  `1126449152 16345 18446744073709551615 1 1 0 0 0 0 0 4096 134234626 0 0 0 17 1 0 0 0 0 0`;

describe("statCpuTicks", () => {
  it("adds utime and stime (fields 14 and 15)", () => {
    expect(statCpuTicks(stat("node"))).toBe(1234 + 56);
  });

  it("counts fields after the command name, whatever spaces or parentheses it holds", () => {
    expect(statCpuTicks(stat("node (router) x 1 2 3"))).toBe(1290);
    expect(statCpuTicks(stat(")"))).toBe(1290);
  });

  it("refuses text that is not a stat line", () => {
    expect(() => statCpuTicks("no parentheses here")).toThrow(/not a \/proc/);
    expect(() => statCpuTicks("1 (node) S 1 2")).toThrow(/no utime/);
  });
});

describe("processCpuSeconds", () => {
  it("reads this process's CPU time as Node itself counts it", () => {
    let x = 0;
    for (let i = 0; i < 5e6; i++) x += Math.sqrt(i); // some CPU time to read
    const usage = process.cpuUsage();
    const own = (usage.user + usage.system) / 1e6;
    expect(x).toBeGreaterThan(0);
    expect(clockTicksPerSecond()).toBeGreaterThan(0);
    // both count every thread of the process; /proc only to the clock tick, and its
    // sampled figure drifts from Node's exact one as the process's CPU time grows (in a
    // long test run, this process has minutes of it): 0.1 s, or 1% of the total
    const tolerance = Math.max(0.1, own * 0.01);
    expect(Math.abs(processCpuSeconds(process.pid) - own)).toBeLessThan(tolerance);
  });
});

describe("statBusyTicks", () => {
  it("adds every CPU's user, nice, system, irq, softirq and steal, not idle or iowait", () => {
    const stat = "cpu  100 5 20 9000 70 1 2 3 0 0\ncpu0 50 2 10 4500 35 0 1 1 0 0\nintr 1 2 3\n";
    expect(statBusyTicks(stat)).toBe(100 + 5 + 20 + 1 + 2 + 3);
  });

  it("refuses text without the all-CPU line", () => {
    expect(() => statBusyTicks("cpu0 50 2 10 4500 35 0 1 1 0 0\n")).toThrow(/no cpu line/);
  });

  it("has irq and softirq on their own (statInterruptTicks)", () => {
    const stat = "cpu  100 5 20 9000 70 1 2 3 0 0\ncpu0 50 2 10 4500 35 0 1 1 0 0\n";
    expect(statInterruptTicks(stat)).toBe(1 + 2);
  });

  it("reads the machine's busy time, which includes this process's", () => {
    const ours = processCpuSeconds(process.pid);
    expect(machineBusySeconds()).toBeGreaterThanOrEqual(ours);
  });
});
