import fc from "fast-check";
import { Metadata, type CallOptions } from "nice-grpc";

/**
 * What the router's fuzz tests (fuzz-*.int.test.ts) share before any cluster exists:
 * the callers and their credentials, the victim's and the probes' queues, and the
 * budgets of a run.
 */

export const SHARD_SECRET = "router-to-shard-secret-0123456789abcdef";
export const JWT_SECRET = "jwt-hs256-secret-0123456789abcdef0123456789";
export const TOKENS = {
  victim: "tok-victim-0123456789abcdef",
  attacker: "tok-attacker-0123456789abcd",
  /** The attacker's admin right over its own tenant gets the dead-letter RPCs past the role check. */
  attackerAdmin: "tok-attacker-admin-0123456789",
  admin: "tok-admin-0123456789abcdef",
  fresh: "tok-fresh-0123456789abcdefg",
};
/** Tenants whose queues the fuzzing may legitimately create. */
export const FUZZ_TENANTS = new Set(["attacker", "fresh", "jwtfuzz"]);
/** The victim's queues: VQ on shard a (the default), VB on shard b. */
export const VICTIM_COMMANDS = ["VQ", "VB"];
export const SHARD_OF: Record<string, string> = { VQ: "a", VB: "b" };
/** Another tenant's probes after a burst (PQ, PB) and round trips at the end (HQ, HB), per shard. */
export const PROBES = { a: ["PQ", "HQ"], b: ["PB", "HB"] };
/** Commands the admin fuzzing must not move: the victim's, the attacker's seeded ones, the probes. */
export const KEEP = new Set([...VICTIM_COMMANDS, "AQ", ...PROBES.a, ...PROBES.b]);
export const CALL_MS = 10_000;
/** Inputs per RPC; CODEQ_FUZZ_RUNS asks for more, CODEQ_FUZZ_SEED replays a reported seed. */
export const RUNS = Number(process.env.CODEQ_FUZZ_RUNS ?? 40);
export const RAW_RUNS = Math.ceil(RUNS * 0.6);
if (process.env.CODEQ_FUZZ_SEED) fc.configureGlobal({ seed: Number(process.env.CODEQ_FUZZ_SEED) });
/** A budget per property, so a slow failure (a hang) cannot shrink for minutes. */
export const BUDGET = { interruptAfterTimeLimit: 15_000 };
export const TWELVE_HOURS = 43_200_000;

export interface Caller {
  readonly tenant: string;
  readonly admin: boolean;
  readonly metadata: Metadata;
  readonly [fc.toStringMethod]: () => string;
}
const caller = (tenant: string, token: string, admin = false): Caller => ({
  tenant,
  admin,
  metadata: new Metadata({ authorization: `Bearer ${token}` }),
  [fc.toStringMethod]: () => `${tenant}${admin ? " (admin)" : ""}`,
});
export const victim = caller("victim", TOKENS.victim);
export const attacker = caller("attacker", TOKENS.attacker);
export const attackerAdmin = caller("attacker", TOKENS.attackerAdmin, true);
export const admin = caller("ops", TOKENS.admin, true);
export const fresh = caller("fresh", TOKENS.fresh);

/** The tokens file the router reads: every caller above. */
export const TOKENS_YAML = [
  "tokens:",
  `  - { token: ${TOKENS.victim}, tenant: victim, roles: [producer, worker] }`,
  `  - { token: ${TOKENS.attacker}, tenant: attacker, roles: [producer, worker] }`,
  `  - { token: ${TOKENS.attackerAdmin}, tenant: attacker, roles: [admin] }`,
  `  - { token: ${TOKENS.admin}, tenant: ops, roles: [admin] }`,
  `  - { token: ${TOKENS.fresh}, tenant: fresh, roles: [producer, worker] }`,
].join("\n");

export const opts = (who: Caller, signal?: AbortSignal): CallOptions => ({
  metadata: who.metadata,
  ...(signal ? { signal } : {}),
});
