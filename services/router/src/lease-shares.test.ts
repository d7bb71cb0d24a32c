import { shares } from "./lease-fan-out";

describe("shares of a unary Lease over several shards", () => {
  it("splits max_tasks evenly, the first shards taking the remainder", () => {
    expect(shares(7, 3, 0)).toEqual([3, 2, 2]);
    expect(shares(7, 3, 5)).toEqual([3, 2, 2]);
  });

  it("with fewer tasks than shards, gives exactly that many shares, in turn, however many calls came before", () => {
    for (const rotation of [0, 1, 2, 999, 2_001, 3_000_001, Number.MAX_SAFE_INTEGER]) {
      const split = shares(1, 2, rotation);
      expect(split.reduce((a, b) => a + b, 0)).toBe(1);
      expect(shares(2, 3, rotation).reduce((a, b) => a + b, 0)).toBe(2);
    }
    // each shard's turn comes round
    expect([0, 1, 2].map((r) => shares(1, 3, r).indexOf(1))).toEqual([0, 1, 2]);
    expect([3_000, 3_001, 3_002].map((r) => shares(1, 3, r).indexOf(1))).toEqual([0, 1, 2]);
  });
});
