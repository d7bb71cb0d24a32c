/**
 * Maps the claims of a verified JWT to an Identity. The tenant, roles and commands
 * are read from configurable claims; roles may also come from the standard OAuth
 * `scope` claim. Roles codeQ does not know are ignored (tokens may carry roles for
 * other systems), but a token must grant at least one codeQ role.
 */
import type { JWTPayload } from "jose";
import { AuthError } from "./errors";
import { COMMAND_PATTERN, isRole, TENANT_PATTERN, type Identity, type Role } from "./identity";

/** Where the identity is found in a token. */
export interface ClaimNames {
  /** Claim holding the tenant. */
  readonly tenantClaim: string;
  /** Claim holding role names, as an array or a space-separated string. */
  readonly rolesClaim: string;
  /** Claim holding the commands a cross-tenant worker is limited to. */
  readonly commandsClaim: string;
}

/** OAuth scopes read from `scope` when the token has no roles claim, and the role each grants. */
export const SCOPE_ROLES: Readonly<Record<string, Role>> = Object.freeze({
  "codeq:produce": "producer",
  "codeq:work": "worker",
  "codeq:admin": "admin",
  "codeq:work:all-tenants": "cross-tenant-worker",
});

/** The identity a verified token stands for; UNAUTHENTICATED or PERMISSION_DENIED when unusable. */
export function identityFromClaims(payload: JWTPayload, names: ClaimNames): Identity {
  const tenant = payload[names.tenantClaim];
  if (tenant === undefined) {
    throw unauthenticated(`the token has no "${names.tenantClaim}" claim naming the tenant`);
  }
  if (typeof tenant !== "string" || !TENANT_PATTERN.test(tenant)) {
    throw unauthenticated(
      `the token's "${names.tenantClaim}" claim must be a tenant name matching ${TENANT_PATTERN.source}`,
    );
  }
  const principal = payload.sub;
  if (typeof principal !== "string" || principal === "") {
    throw unauthenticated('the token has no "sub" claim naming the caller');
  }
  const roles = rolesOf(payload, names.rolesClaim);
  if (roles.size === 0) {
    throw new AuthError(
      "PERMISSION_DENIED",
      `the credential grants no codeQ role: its "${names.rolesClaim}" claim must name producer, worker, admin or cross-tenant-worker (or its "scope" one of ${Object.keys(SCOPE_ROLES).join(", ")})`,
    );
  }
  const commands = commandsOf(payload, names.commandsClaim);
  return Object.freeze({ tenant, principal, roles, ...(commands && { commands }) });
}

/** Roles from the roles claim when present, else from `scope`; unknown names are skipped. */
function rolesOf(payload: JWTPayload, rolesClaim: string): Set<Role> {
  const roles = new Set<Role>();
  if (payload[rolesClaim] !== undefined) {
    for (const name of listClaim(payload, rolesClaim)) if (isRole(name)) roles.add(name);
  } else if (payload.scope !== undefined) {
    for (const scope of listClaim(payload, "scope")) {
      const role = Object.hasOwn(SCOPE_ROLES, scope) ? SCOPE_ROLES[scope] : undefined;
      if (role) roles.add(role);
    }
  }
  return roles;
}

function commandsOf(payload: JWTPayload, commandsClaim: string): readonly string[] | undefined {
  if (payload[commandsClaim] === undefined) return undefined;
  const commands = listClaim(payload, commandsClaim);
  if (!commands.every((c) => COMMAND_PATTERN.test(c))) {
    throw unauthenticated(
      `the token's "${commandsClaim}" claim must list command names matching ${COMMAND_PATTERN.source}`,
    );
  }
  return Object.freeze(commands);
}

/** A claim holding an array of strings or one space-separated string. */
function listClaim(payload: JWTPayload, claim: string): string[] {
  const value = payload[claim];
  if (typeof value === "string") return value.split(/\s+/).filter((s) => s !== "");
  if (Array.isArray(value) && value.every((v) => typeof v === "string")) return [...value];
  throw unauthenticated(
    `the token's "${claim}" claim must be an array of strings or a space-separated string`,
  );
}

function unauthenticated(message: string): AuthError {
  return new AuthError("UNAUTHENTICATED", message);
}
