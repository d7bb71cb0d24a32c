import { creditShares, idleAllowance, type LegState, turnsPending } from "./credit-shares";

const NOW = 1_000_000;

/** A shard stream as the split sees it: busy (pushed just now) unless told otherwise. */
function leg(over: Partial<Omit<LegState, "idle">> & { isIdle?: boolean } = {}): LegState {
  const { isIdle = false, ...state } = over;
  return {
    closed: false,
    accepting: true,
    granted: 0,
    creditedAt: NOW - 10_000,
    lastPushAt: NOW,
    withdrawnIdle: false,
    quietMs: 250,
    ...state,
    idle: () => isIdle,
  };
}

const legsOf = (entries: Record<string, LegState>) => new Map(Object.entries(entries));

describe("creditShares: a client's credits over the shards of its stream", () => {
  it("gives one shard all of them", () => {
    expect(creditShares(["a"], legsOf({ a: leg({ isIdle: true }) }), 37, NOW)).toEqual([37]);
  });

  it("splits them evenly over busy shards, the first taking the remainder", () => {
    const legs = legsOf({ a: leg(), b: leg(), c: leg() });
    expect(creditShares(["a", "b", "c"], legs, 100, NOW)).toEqual([34, 33, 33]);
  });

  it("leaves an idle shard its allowance and the busy ones the rest", () => {
    const legs = legsOf({ a: leg(), b: leg({ isIdle: true }), c: leg() });
    expect(creditShares(["a", "b", "c"], legs, 100, NOW)).toEqual([45, 10, 45]);
    // a shard without an open stream counts as idle
    const gone = legsOf({ a: leg(), c: leg({ closed: true }) });
    expect(creditShares(["a", "b", "c"], gone, 100, NOW)).toEqual([80, 10, 10]);
  });

  it("holds the rest back when no shard is busy, for the first that pushes", () => {
    const legs = legsOf({ a: leg({ isIdle: true }), b: leg({ isIdle: true }) });
    expect(creditShares(["a", "b"], legs, 100, NOW)).toEqual([10, 10]);
    expect(creditShares(["a", "b"], legs, 9, NOW)).toEqual([4, 4]);
    expect(idleAllowance(9, 2)).toBe(4);
  });

  describe("with fewer credits than shards, they take turns", () => {
    const wanted = ["a", "b", "c"];

    it("keeps the credit with a shard whose turn has begun", () => {
      const legs = legsOf({
        a: leg(),
        b: leg({ granted: 1, creditedAt: NOW - 100, lastPushAt: NOW - 5_000 }),
        c: leg({ creditedAt: NOW - 60_000 }),
      });
      expect(creditShares(wanted, legs, 1, NOW)).toEqual([0, 1, 0]);
    });

    it("puts a shard that waited its turn before a busy one, the longest waiting first", () => {
      const legs = legsOf({
        a: leg({ granted: 1, creditedAt: NOW - 5_000 }), // busy, its turn long over
        b: leg({ creditedAt: NOW - 2_000, lastPushAt: NOW - 9_000 }),
        c: leg({ creditedAt: NOW - 3_000, lastPushAt: NOW - 9_000 }),
      });
      expect(creditShares(wanted, legs, 1, NOW)).toEqual([0, 0, 1]);
      expect(creditShares(wanted, legs, 2, NOW)).toEqual([0, 1, 1]);
    });

    it("makes a shard whose last turn found nothing wait longer", () => {
      // a is busy (it pushed at `t`), b last had a credit 2 s before NOW
      const legsAt = (t: number, withdrawnIdle: boolean) =>
        legsOf({
          a: leg({ granted: 1, creditedAt: NOW - 5_000, lastPushAt: t }),
          b: leg({ creditedAt: NOW - 2_000, lastPushAt: NOW - 9_000, withdrawnIdle }),
        });
      expect(creditShares(["a", "b"], legsAt(NOW, false), 1, NOW)).toEqual([0, 1]);
      expect(creditShares(["a", "b"], legsAt(NOW, true), 1, NOW)).toEqual([1, 0]);
      const later = NOW + 3_500;
      expect(creditShares(["a", "b"], legsAt(later, true), 1, later)).toEqual([0, 1]);
    });

    it("gives a stream whose shard has not answered its subscription no turn before the others", () => {
      const legs = legsOf({
        a: leg({ accepting: false, creditedAt: NOW - 60_000 }),
        b: leg({ lastPushAt: NOW - 9_000, creditedAt: NOW - 500 }),
      });
      expect(creditShares(["a", "b"], legs, 1, NOW)).toEqual([0, 1]);
    });

    it("gives no turn to a shard without an open stream", () => {
      const legs = legsOf({ b: leg({ closed: true }), c: leg() });
      expect(creditShares(wanted, legs, 2, NOW)).toEqual([0, 0, 1]);
    });
  });
});

describe("turnsPending", () => {
  it("is true while one shard holds the scarce credits and another has none", () => {
    const legs = legsOf({ a: leg({ granted: 1 }), b: leg() });
    expect(turnsPending(["a", "b"], legs, 1)).toBe(true);
    expect(turnsPending(["a", "b"], legs, 0)).toBe(false);
    expect(turnsPending(["a", "b"], legs, 2)).toBe(false);
    expect(turnsPending(["a", "b"], legsOf({ a: leg(), b: leg() }), 1)).toBe(false);
    expect(turnsPending(["a", "b"], legsOf({ a: leg({ granted: 1 }) }), 1)).toBe(false);
  });
});
