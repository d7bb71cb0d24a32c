import { leaseTokenQueue, ScriptCode, type SettleOutcome } from "@codeq/engine";
import { requireRole, servesAllTenants, type Identity } from "@codeq/server-kit";
import { checkBatch } from "./batch-limit";
import { toServerError } from "./status";

/**
 * A lease token of the caller's tenant, or of a command it serves for every tenant.
 * Only the two names are read here: the settle verifies the whole token (a malformed
 * one is NOT_FOUND there too).
 */
export function ownsLease(identity: Identity, token: string): boolean {
  const t = leaseTokenQueue(token);
  return !!t && (t.tenant === identity.tenant || servesAllTenants(identity, t.command));
}

/**
 * Settles, with `run`, the items whose lease tokens the caller owns (`ownsLease`); the
 * others are NOT_FOUND. Outcomes come in the items' order; at most `maxBatch` items.
 */
export async function settleOwn<I extends { leaseToken: string }>(
  identity: Identity,
  items: readonly I[],
  maxBatch: number,
  run: (own: I[]) => Promise<SettleOutcome[]>,
): Promise<SettleOutcome[]> {
  requireRole(identity, "worker", "settling a lease");
  checkBatch("items", items.length, maxBatch);
  const outcomes: SettleOutcome[] = new Array(items.length);
  const own: I[] = [];
  const where: number[] = [];
  items.forEach((item, i) => {
    if (!ownsLease(identity, item.leaseToken)) {
      outcomes[i] = { code: ScriptCode.NotFound };
    } else {
      own.push(item);
      where.push(i);
    }
  });
  if (own.length > 0) {
    let results: SettleOutcome[];
    try {
      results = await run(own);
    } catch (err) {
      throw toServerError(err);
    }
    results.forEach((r, j) => (outcomes[where[j]!] = r));
  }
  return outcomes;
}
