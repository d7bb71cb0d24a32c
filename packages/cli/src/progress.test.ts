import type { Output } from "./command";
import {
  fraction,
  progressBar,
  progressLine,
  ProgressReporter,
  type ProgressView,
} from "./progress";

const view = (over: Partial<ProgressView> = {}): ProgressView => ({
  id: "m1",
  moved: 30,
  remaining: 10,
  rate: 12.34,
  state: "COPYING",
  ...over,
});

function recorder(errIsTTY: boolean) {
  const err: string[] = [];
  const raw: string[] = [];
  const io: Output = {
    out: () => undefined,
    err: (l) => err.push(l),
    errRaw: (t) => raw.push(t),
    errIsTTY,
  };
  return { io, err, raw };
}

describe("progress", () => {
  test("fraction is moved / (moved + remaining); a finished empty move is whole", () => {
    expect(fraction(view())).toBe(0.75);
    expect(fraction(view({ moved: 0, remaining: 0 }))).toBe(0);
    expect(fraction(view({ moved: 0, remaining: 0, state: "COMPLETED" }))).toBe(1);
  });

  test("the bar fills in proportion and shows counts, rate and state", () => {
    expect(progressBar(view(), 8)).toBe("m1 [██████░░]  75%  30/40 tasks  12.3/s  COPYING");
    expect(progressLine(view({ lastError: "target down" }))).toBe(
      "m1: 75%  30/40 tasks  12.3/s  COPYING  (retrying: target down)",
    );
  });

  test("on a terminal the bar is redrawn in place and its line ended at the finish", () => {
    const { io, raw, err } = recorder(true);
    const p = new ProgressReporter(io);
    p.update(view());
    p.update(view({ moved: 40, remaining: 0, state: "COMPLETED" }));
    p.finish();
    expect(raw).toHaveLength(3);
    expect(raw[0]).toMatch(/^\r\x1b\[2Km1 \[/);
    expect(raw[1]).toContain("100%  40/40 tasks");
    expect(raw[2]).toBe("\n");
    expect(err).toEqual([]);
  });

  test("elsewhere a plain line per change, not per poll", () => {
    const { io, raw, err } = recorder(false);
    const p = new ProgressReporter(io);
    p.update(view());
    p.update(view({ rate: 99 })); // only the rate moved: no new line
    p.update(view({ moved: 40, remaining: 0, state: "COMPLETED" }));
    p.finish();
    expect(err).toEqual([
      "m1: 75%  30/40 tasks  12.3/s  COPYING",
      "m1: 100%  40/40 tasks  12.3/s  COMPLETED",
    ]);
    expect(raw).toEqual([]);
  });
});
