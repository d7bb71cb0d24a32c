import { Status, type CallContext } from "nice-grpc";
import { CALLER_CODES } from "@codeq/server-kit";
import { asServerError } from "./fan-out";
import type { Forward, Routing } from "./routing";
import { NotStored } from "./shard-pool";

/** Codes of a request refused whole for its own sake: nothing of it was stored. */
const REFUSED: ReadonlySet<number> = new Set([...CALLER_CODES, Status.FAILED_PRECONDITION]);

/**
 * Whether `err`, failing a call (or one shard's part of a split batch), shows that
 * none of it was stored: refused for the caller's sake (bad input, no right), never
 * sent (the shard's breaker open, its lane full), or fenced again after a refresh.
 */
export function storedNothing(err: unknown): boolean {
  return err instanceof NotStored || REFUSED.has(asServerError(err).code);
}

/** Told of `items` of a call that were not stored (a split batch's refused parts). */
export type Unstored = (items: number) => void;

const IGNORED: Unstored = () => undefined;

/**
 * Charges the tenant's enqueue rate limit for `n` tasks, runs `store`, and gives back
 * the charge of what was not stored (`storedNothing`): of the whole call when it
 * fails so, and of the parts of a split batch that `store` reports (`unstored`). So a
 * producer's bad batch does not lock its tenant out, nor do retries against a shard
 * that is down. A failure that may have stored it (a deadline, a broken connection)
 * stays charged, as do items a shard refused one by one in its answer.
 */
export function chargeEnqueue<T>(
  routing: Routing,
  f: Forward,
  ctx: CallContext | undefined,
  n: number,
  store: (unstored: Unstored) => Promise<T>,
): Promise<T> {
  const bucket = routing.limits.enqueue(ctx, f.identity.tenant, n);
  // without a limit, nothing to give back: no wrapper on the enqueue's path
  if (!bucket) return store(IGNORED);
  let back = 0;
  const unstored = (items: number) => {
    const k = Math.min(items, n - back);
    back += k;
    if (k > 0) bucket.refund(k);
  };
  return store(unstored).catch((err: unknown) => {
    if (storedNothing(err)) unstored(n);
    throw err;
  });
}
