import { Status, type CallContext } from "nice-grpc";
import { CALLER_CODES } from "@codeq/server-kit";
import { asServerError } from "./fan-out";
import type { Forward, Routing } from "./routing";
import { NotSent } from "./shard-pool";

/** Codes of a request refused whole for its own sake: nothing of it was stored. */
const REFUSED: ReadonlySet<number> = new Set([...CALLER_CODES, Status.FAILED_PRECONDITION]);

/**
 * Charges the tenant's enqueue rate limit for `n` tasks, runs `store`, and gives the
 * charge back when the request is refused as a whole for its own sake (bad input,
 * no right: nothing was stored), so a producer's bad batch does not lock its tenant
 * out, or when the router never sent it (the shard's breaker open, its lane full), so
 * retries against a shard that is down do not lock it out either. A failure that may
 * have stored it (a deadline, a broken connection) stays charged, as do items refused
 * one by one in an answer.
 */
export function chargeEnqueue<T>(
  routing: Routing,
  f: Forward,
  ctx: CallContext | undefined,
  n: number,
  store: () => Promise<T>,
): Promise<T> {
  const bucket = routing.limits.enqueue(ctx, f.identity.tenant, n);
  // without a limit, nothing to give back: no wrapper on the enqueue's path
  if (!bucket) return store();
  return store().catch((err: unknown) => {
    if (err instanceof NotSent || REFUSED.has(asServerError(err).code)) bucket.refund(n);
    throw err;
  });
}
