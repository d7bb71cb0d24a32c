import { ServerError, Status } from "nice-grpc";
import { requireRole, servesAllTenants, type Identity } from "@codeq/server-kit";
import { NAME_PATTERN } from "@codeq/common";
import type { Topic } from "./notifier";
import { invalid } from "./status";

/** What one lease asks for, validated. */
export interface LeaseAsk {
  readonly commands: readonly string[];
  readonly allTenants: boolean;
  readonly leaseMs: number;
}

/**
 * Validates a lease request's subscription and the caller's rights to it; a `leaseMs`
 * of 0 asks for `defaultLeaseMs`.
 */
export function validateLeaseAsk(
  identity: Identity,
  commands: readonly string[],
  allTenants: boolean,
  leaseMs: number,
  defaultLeaseMs: number,
): LeaseAsk {
  requireRole(identity, "worker", "lease");
  if (commands.length === 0) throw invalid("commands: at least one command is required");
  if (commands.length > 32) throw invalid(`commands: at most 32, got ${commands.length}`);
  for (const [i, c] of commands.entries()) {
    if (!NAME_PATTERN.test(c)) throw invalid(`commands[${i}] must match ${NAME_PATTERN.source}`);
  }
  if (allTenants) {
    requireRole(identity, "cross-tenant-worker", "all_tenants");
    const denied = commands.find((c) => !servesAllTenants(identity, c));
    if (denied !== undefined)
      throw new ServerError(
        Status.PERMISSION_DENIED,
        `all_tenants: this credential serves every tenant only of ${identity.commands?.join(", ")}, not ${denied}`,
      );
  }
  const ms = leaseMs || defaultLeaseMs;
  if (ms < 1000 || ms > 43_200_000)
    throw invalid(`lease_duration_ms must be 1000..43200000, got ${leaseMs}`);
  return { commands: [...new Set(commands)], allTenants, leaseMs: ms };
}

/** The wake-up topics of a lease ask. */
export function leaseTopics(identity: Identity, ask: LeaseAsk): Topic[] {
  return ask.commands.map((command) =>
    ask.allTenants ? { command } : { queue: { command, tenant: identity.tenant } },
  );
}
