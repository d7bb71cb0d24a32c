import type { Leg } from "./fan-in-leg";

/**
 * Credits an idle shard stream keeps while another shard of the client's stream is busy:
 * enough to deliver at once when tasks appear there (it is then busy again and gets more).
 */
const IDLE_CREDITS = 10;
/**
 * With fewer credits than shards, a shard that has had no credit for this long goes
 * before a busy one (see `scarceShares`).
 */
const TURN_WAIT_MS = 1_000;
/** The same, for a shard whose last turn found nothing to push. */
const IDLE_TURN_WAIT_MS = 5_000;

/** What the split of a client's credits reads of a shard stream. */
export type LegState = Pick<
  Leg,
  "closed" | "accepting" | "granted" | "creditedAt" | "lastPushAt" | "withdrawnIdle" | "quietMs"
> & { idle(now: number): boolean };

/** The wanted shards' streams, by shard id: undefined for a shard with no open stream. */
const openLeg = (legs: ReadonlyMap<string, LegState>, id: string) => {
  const leg = legs.get(id);
  return leg && !leg.closed ? leg : undefined;
};

/**
 * Each wanted shard's share of a client's `outstanding` credits, in the order of
 * `wanted`. With one shard, all of them. With several, a shard that is idle (its
 * stream holds credits and has pushed nothing for its quiet time, `Leg.idle`) or has no open stream
 * keeps at most IDLE_CREDITS, and the busy shards split the rest evenly; when none is
 * busy, each keeps the idle allowance and the rest waits for the first shard that
 * pushes. With fewer credits than shards, see `scarceShares`.
 */
export function creditShares(
  wanted: readonly string[],
  legs: ReadonlyMap<string, LegState>,
  outstanding: number,
  now: number,
): number[] {
  const n = wanted.length;
  if (n === 1) return [outstanding];
  if (outstanding < n) return scarceShares(wanted, legs, outstanding, now);
  const idle = wanted.map((id) => openLeg(legs, id)?.idle(now) ?? true);
  const allowance = idleAllowance(outstanding, n);
  const busy = idle.filter((x) => !x).length;
  const rest = outstanding - (n - busy) * allowance;
  const even = (i: number) => Math.floor(rest / busy) + (i < rest % busy ? 1 : 0);
  let b = 0;
  return idle.map((isIdle) => (isIdle ? allowance : even(b++)));
}

/** What an idle shard keeps of a client's `outstanding` credits over `shards` shards. */
export function idleAllowance(outstanding: number, shards: number): number {
  return Math.min(IDLE_CREDITS, Math.floor(outstanding / shards));
}

/**
 * Fewer credits than shards: some shard must hold none, and a shard without credits
 * cannot show that it has tasks. So the shards take turns, one credit each: first
 * those whose turn has begun (credited less than their idle time ago), then those
 * that have had no credit for TURN_WAIT_MS, then those that pushed within their idle
 * time (busy), then the rest; within each, the one whose last turn began longest
 * ago first. A shard that holds a credit for its idle time without pushing has had
 * its turn and gives it back (FanInSession's `recycleIdle`). A busy shard keeps
 * getting the credits its worker returns, but never for long while another waits:
 * each shard is reached within about TURN_WAIT_MS + its quiet time (`Leg.quietMs`) per
 * shard waiting before it.
 */
function scarceShares(
  wanted: readonly string[],
  legs: ReadonlyMap<string, LegState>,
  outstanding: number,
  now: number,
): number[] {
  const rank = (leg: LegState) => {
    if (!leg.accepting) return 4; // it may not answer: its turn could hold the credit
    if (leg.granted > 0 && now - leg.creditedAt < leg.quietMs) return 0; // its turn
    // waited long (longer after a turn in which it had nothing to push)
    const wait = leg.withdrawnIdle ? IDLE_TURN_WAIT_MS : TURN_WAIT_MS;
    if (leg.granted === 0 && now - leg.creditedAt >= wait) return 1;
    if (now - leg.lastPushAt < leg.quietMs) return 2; // busy
    return 3;
  };
  const order = wanted
    .map((id, i) => ({ i, leg: openLeg(legs, id) }))
    .filter((c): c is { i: number; leg: LegState } => c.leg !== undefined)
    .sort((x, y) => rank(x.leg) - rank(y.leg) || x.leg.creditedAt - y.leg.creditedAt);
  const shares = wanted.map(() => 0);
  for (const { i } of order.slice(0, outstanding)) shares[i] = 1;
  return shares;
}

/**
 * Fewer credits than wanted shards (`scarceShares`), and a shard holds some while
 * another holds none: the credits are to move once the holder's turn is over, and
 * no message may come to say when that is.
 */
export function turnsPending(
  wanted: readonly string[],
  legs: ReadonlyMap<string, LegState>,
  outstanding: number,
): boolean {
  if (outstanding === 0 || outstanding >= wanted.length) return false;
  let holding = false;
  let lacking = false;
  for (const id of wanted) {
    const leg = openLeg(legs, id);
    if (!leg) continue;
    if (leg.granted > 0) holding = true;
    else lacking = true;
  }
  return holding && lacking;
}
