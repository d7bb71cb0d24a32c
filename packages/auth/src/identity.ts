/**
 * Who is calling, as established from a credential. The shape extends server-kit's
 * development `Identity` compatibly (same fields, plus optional `commands`), so an
 * identity from this package can be passed wherever server-kit's is expected. The
 * tenant comes from the credential only, never from the request or a client header.
 */

import { NAME_PATTERN } from "@codeq/common";

/** Rights a caller may hold. */
export type Role = "producer" | "worker" | "admin" | "cross-tenant-worker";

/** Every role, for validation. */
export const ROLES: ReadonlySet<Role> = new Set<Role>([
  "producer",
  "worker",
  "admin",
  "cross-tenant-worker",
]);

/** A tenant name (the same pattern the engine and the shard map enforce). */
export const TENANT_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/;

/** A command name (the same pattern as a tenant). */
export const COMMAND_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/;

/** Who is calling. */
export interface Identity {
  readonly tenant: string;
  /** Who holds the credential: a JWT's `sub`, or a static token's `principal`. */
  readonly principal: string;
  readonly roles: ReadonlySet<Role>;
  /**
   * When present, the only commands a cross-tenant worker may serve (an empty list
   * allows none); absent means no restriction. Enforcement is the caller's.
   */
  readonly commands?: readonly string[];
  /**
   * When the credential stops being accepted, in ms since the epoch (a JWT's `exp`
   * plus the clock tolerance); absent, it does not expire. A stream opened with it
   * ends then (the router's rule).
   */
  readonly acceptedUntilMs?: number;
}

/** True when `value` names a codeQ role. */
export function isRole(value: unknown): value is Role {
  return typeof value === "string" && ROLES.has(value as Role);
}
