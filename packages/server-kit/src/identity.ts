import { Metadata, ServerError, Status } from "nice-grpc";

/** Rights a caller may hold. */
export type Role = "producer" | "worker" | "admin" | "cross-tenant-worker";

/** Who is calling, as established from metadata. */
export interface Identity {
  readonly tenant: string;
  readonly principal: string;
  readonly roles: ReadonlySet<Role>;
}

const ROLES = new Set<Role>(["producer", "worker", "admin", "cross-tenant-worker"]);
const DEFAULT_ROLES: Role[] = ["producer", "worker"];
const TENANT = /^[A-Za-z0-9_.-]{1,128}$/;

/**
 * Establishes the caller's identity. Until authentication lands, only the
 * development mode exists: `x-codeq-tenant` (and optional `x-codeq-roles`,
 * default producer + worker) are trusted as stated. With development identity off
 * there is no way in yet, and every call is UNAUTHENTICATED.
 */
export function identityFrom(metadata: Metadata, devIdentity: boolean): Identity {
  if (!devIdentity) {
    throw new ServerError(
      Status.UNAUTHENTICATED,
      "no credentials accepted: this service runs without development identity (CODEQ_SHARD_DEV_IDENTITY / CODEQ_ROUTER_DEV_IDENTITY) and authentication is not configured",
    );
  }
  const tenant = metadata.get("x-codeq-tenant");
  if (!tenant)
    throw new ServerError(
      Status.UNAUTHENTICATED,
      "missing x-codeq-tenant metadata (development identity)",
    );
  if (!TENANT.test(tenant)) {
    throw new ServerError(Status.UNAUTHENTICATED, `x-codeq-tenant must match ${TENANT.source}`);
  }
  const stated = metadata.get("x-codeq-roles");
  const roles = new Set<Role>();
  for (const role of stated ? stated.split(",").map((r) => r.trim()) : DEFAULT_ROLES) {
    if (!ROLES.has(role as Role))
      throw new ServerError(Status.UNAUTHENTICATED, `unknown role in x-codeq-roles: ${role}`);
    roles.add(role as Role);
  }
  return { tenant, principal: `dev:${tenant}`, roles };
}

/** PERMISSION_DENIED unless the caller holds `role`. */
export function requireRole(identity: Identity, role: Role, what: string): void {
  if (!identity.roles.has(role)) {
    throw new ServerError(Status.PERMISSION_DENIED, `${what} needs the ${role} role`);
  }
}
