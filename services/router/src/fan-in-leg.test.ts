import { IDLE_MS, Leg } from "./fan-in-leg";
import type { ShardConn } from "./shard-pool";

/** A stream to shard a holding `credits`, opened now, that has pushed nothing. */
function legWith(credits: number): Leg {
  const leg = new Leg(
    { id: "a" } as ShardConn,
    () => 1,
    () => undefined,
  );
  leg.granted = credits;
  return leg;
}

describe("Leg.idle", () => {
  test("a stream holding credits that has pushed nothing for IDLE_MS is idle", () => {
    const leg = legWith(5);
    expect(leg.idle(leg.openedAt + IDLE_MS - 1)).toBe(false);
    expect(leg.idle(leg.openedAt + IDLE_MS)).toBe(true);
  });

  test("one whose reading is held for a slow client is not: what it pushed is not read yet", () => {
    const leg = legWith(5);
    leg.held = true;
    expect(leg.idle(leg.openedAt + 10 * IDLE_MS)).toBe(false);
    leg.held = false;
    expect(leg.idle(leg.openedAt + 10 * IDLE_MS)).toBe(true);
  });
});
