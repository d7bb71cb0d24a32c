import { createHash, timingSafeEqual } from "node:crypto";
import { Metadata, ServerError, Status } from "nice-grpc";
import { NAME_PATTERN as NAME } from "@codeq/common";

/** Rights a caller may hold. */
export type Role = "producer" | "worker" | "admin" | "cross-tenant-worker";

/** Who is calling, as established by the router (or, in development, stated by the caller). */
export interface Identity {
  readonly tenant: string;
  readonly principal: string;
  readonly roles: ReadonlySet<Role>;
  /**
   * The commands a cross-tenant worker may serve for every tenant; undefined means
   * every command. Ignored without the cross-tenant-worker role.
   */
  readonly commands?: readonly string[];
  /**
   * When the caller's credential stops being accepted, ms since the epoch (the router
   * ends its streams then); absent: it does not expire. Never stated to shards.
   */
  readonly acceptedUntilMs?: number;
}

/** Metadata the router states identity in, towards shard workers. */
export const IDENTITY_HEADERS = {
  tenant: "x-codeq-tenant",
  roles: "x-codeq-roles",
  principal: "x-codeq-principal",
  commands: "x-codeq-commands",
  /** The proof that a router is calling (the shared secret, when TLS does not prove it). */
  routerSecret: "x-codeq-router-secret",
} as const;

/** How a shard worker (or a router in development) accepts identity. */
export interface IdentityOptions {
  /**
   * Development identity: trust `x-codeq-tenant`/`x-codeq-roles` from any caller.
   * Never in production; services log a warning when it is on.
   */
  readonly devIdentity: boolean;
  /**
   * The secret routers present in `x-codeq-router-secret`. When set, identity
   * metadata is trusted only from callers that present it.
   */
  readonly routerSecret?: string;
  /**
   * A secret also accepted while routers move to `routerSecret` (a rotation: shard
   * workers take both, routers are rolled onto the new one, then this is dropped).
   */
  readonly previousRouterSecret?: string;
  /**
   * The transport already proved the caller is a router (mutual TLS with a CA only
   * routers and shard workers have certificates of): stated identity is trusted.
   */
  readonly trustedTransport?: boolean;
}

export const ROLES: ReadonlySet<Role> = new Set<Role>([
  "producer",
  "worker",
  "admin",
  "cross-tenant-worker",
]);
const DEFAULT_ROLES: Role[] = ["producer", "worker"];

/**
 * Where stated identity is read from: a call's metadata, or the fields of a message
 * that carries a forwarded call's identity (codeq.internal.v1.ForwardRequest).
 */
export interface StatedHeaders {
  get(key: string): string | Uint8Array | undefined;
}

/** A text header (a binary one, `-bin`, is never an identity header). */
function header(headers: StatedHeaders, key: string): string | undefined {
  const value = headers.get(key);
  return typeof value === "string" ? value : undefined;
}

const unauthenticated = (message: string) => new ServerError(Status.UNAUTHENTICATED, message);
const digest = (s: string) => createHash("sha256").update(s).digest();

/** Constant-time comparison of a presented secret with the expected one. */
export function secretMatches(presented: string | undefined, expected: string): boolean {
  return presented !== undefined && timingSafeEqual(digest(presented), digest(expected));
}

/** The caller presents the router secret (or, during a rotation, the previous one). */
function presentsRouterSecret(metadata: StatedHeaders, o: IdentityOptions): boolean {
  const presented = header(metadata, IDENTITY_HEADERS.routerSecret);
  return (
    (o.routerSecret !== undefined && secretMatches(presented, o.routerSecret)) ||
    (o.previousRouterSecret !== undefined && secretMatches(presented, o.previousRouterSecret))
  );
}

/**
 * Establishes the caller's identity on a service behind the router. With a router
 * secret configured, the identity the router states is trusted from callers that
 * present the secret; a caller without it is refused (calls must come through a
 * router), unless development identity is on. With development identity alone, any
 * caller's stated identity is trusted. With neither, every call is refused.
 */
export function identityFrom(
  metadata: StatedHeaders,
  options: IdentityOptions | boolean,
): Identity {
  const o: IdentityOptions = typeof options === "boolean" ? { devIdentity: options } : options;
  if (o.trustedTransport) return statedIdentity(metadata, "router");
  if (o.routerSecret !== undefined) {
    if (presentsRouterSecret(metadata, o)) return statedIdentity(metadata, "router");
    if (!o.devIdentity)
      throw unauthenticated(
        "this service accepts calls only from a codeQ router (x-codeq-router-secret missing or wrong); call the router instead",
      );
  }
  if (!o.devIdentity) {
    throw unauthenticated(
      "no credentials accepted: this service runs without development identity (CODEQ_SHARD_DEV_IDENTITY / CODEQ_ROUTER_DEV_IDENTITY) and without a router secret or authentication",
    );
  }
  return statedIdentity(metadata, "dev");
}

/**
 * True when the caller may use an internal service (routers and shard workers only):
 * it came over mutual TLS, or presented the router secret. Without either configured,
 * only development identity admits callers (anyone, as it does for stated identity);
 * with neither, no one, as `identityFrom` refuses every call.
 */
export function fromRouter(metadata: StatedHeaders, options: IdentityOptions): boolean {
  if (options.trustedTransport) return true;
  if (options.routerSecret === undefined) return options.devIdentity;
  return presentsRouterSecret(metadata, options);
}

/** The identity stated in metadata (by a router, or by a developer in dev mode). */
export function statedIdentity(metadata: StatedHeaders, by: "router" | "dev"): Identity {
  const tenant = header(metadata, IDENTITY_HEADERS.tenant);
  if (!tenant)
    throw unauthenticated(`missing ${IDENTITY_HEADERS.tenant} metadata (${by} identity)`);
  if (!NAME.test(tenant))
    throw unauthenticated(`${IDENTITY_HEADERS.tenant} must match ${NAME.source}`);
  const statedRoles = header(metadata, IDENTITY_HEADERS.roles);
  const roles = new Set<Role>();
  // stated but empty is no role at all; only an identity that states none gets the defaults
  const named = statedRoles
    ?.split(",")
    .map((r) => r.trim())
    .filter((r) => r !== "");
  for (const role of named ?? DEFAULT_ROLES) {
    if (!ROLES.has(role as Role))
      throw unauthenticated(`unknown role in ${IDENTITY_HEADERS.roles}: ${role.slice(0, 40)}`);
    roles.add(role as Role);
  }
  // a principal travels percent-encoded: a credential's subject may be any text
  const stated = header(metadata, IDENTITY_HEADERS.principal);
  const principal = (stated && decodeOrRaw(stated)) || `${by}:${tenant}`;
  const commandList = header(metadata, IDENTITY_HEADERS.commands);
  // absent: every command; stated but empty: none
  const commands =
    commandList !== undefined ? commandList.split(",").filter((c) => NAME.test(c)) : undefined;
  return { tenant, principal, roles, ...(commands ? { commands } : {}) };
}

/** The metadata a router states `identity` in towards a shard worker. */
export function identityMetadata(identity: Identity, routerSecret?: string): Metadata {
  const m = new Metadata({
    [IDENTITY_HEADERS.tenant]: identity.tenant,
    [IDENTITY_HEADERS.roles]: [...identity.roles].join(","),
    // cut by code points, lone surrogates made well-formed: encodeURIComponent throws on them
    [IDENTITY_HEADERS.principal]: encodeURIComponent(
      [...identity.principal]
        .slice(0, 512)
        .join("")
        .replace(/[\uD800-\uDFFF]/gu, "\uFFFD"),
    ),
  });
  if (identity.commands) m.set(IDENTITY_HEADERS.commands, identity.commands.join(","));
  if (routerSecret !== undefined) m.set(IDENTITY_HEADERS.routerSecret, routerSecret);
  return m;
}

/** PERMISSION_DENIED unless the caller holds `role`. */
export function requireRole(identity: Identity, role: Role, what: string): void {
  if (!identity.roles.has(role)) {
    throw new ServerError(Status.PERMISSION_DENIED, `${what} needs the ${role} role`);
  }
}

/** True when the caller may act on `command` for every tenant. */
export function servesAllTenants(identity: Identity, command: string): boolean {
  return (
    identity.roles.has("cross-tenant-worker") &&
    (identity.commands === undefined || identity.commands.includes(command))
  );
}

function decodeOrRaw(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
