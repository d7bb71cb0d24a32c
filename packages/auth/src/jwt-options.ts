/**
 * The settings of a JwtVerifier, their defaults, and the checks that refuse an
 * unusable combination at construction rather than at the first call.
 */
import { AuthConfigError, formatProblems } from "./errors";

/** Settings of a JwtVerifier. At least one of hs256Secret, jwksFile and jwksUrl is required. */
export interface JwtVerifierOptions {
  /** Shared secret for HS256 tokens, at least 32 bytes (UTF-8). Enables HS256. */
  readonly hs256Secret?: string;
  /** Path of a JWKS file with the issuer's public keys. Enables RS256 and ES256. */
  readonly jwksFile?: string;
  /** Least time between checks of the JWKS file for changes (default 10,000 ms). */
  readonly jwksFileCheckIntervalMs?: number;
  /** URL of the issuer's JWKS (https; http only with jwksUrlAllowHttp). Enables RS256 and ES256. */
  readonly jwksUrl?: string;
  /** Least time between two fetches of the JWKS URL, also on unknown kids (default 30,000 ms). */
  readonly jwksUrlCooldownMs?: number;
  /** Longest time a fetched key set is used before it is fetched again (default 600,000 ms). */
  readonly jwksUrlCacheMaxAgeMs?: number;
  /** Timeout of one JWKS fetch (default 5,000 ms). */
  readonly jwksUrlTimeoutMs?: number;
  /** Allow a plain http JWKS URL on a non-loopback host (default false: keys could be forged in transit). */
  readonly jwksUrlAllowHttp?: boolean;
  /** Accepted `iss` value(s); unset: any issuer. */
  readonly issuer?: string | readonly string[];
  /** Accepted `aud` value(s); unset: any audience. */
  readonly audience?: string | readonly string[];
  /** Tolerated clock difference for `exp`, `nbf` and `iat`, in seconds (default 30). */
  readonly clockToleranceSec?: number;
  /** Refuse tokens without `exp` (default true: a token without one is valid forever). */
  readonly requireExp?: boolean;
  /** Claim holding the tenant (default "tenant"). */
  readonly tenantClaim?: string;
  /** Claim holding codeQ role names, array or space-separated (default "roles"); `scope` when absent. */
  readonly rolesClaim?: string;
  /** Claim listing the commands a cross-tenant worker is limited to (default "commands"). */
  readonly commandsClaim?: string;
  /** Longest time a verified token is trusted without verifying again (default 60,000 ms; 0: no cache). */
  readonly cacheTtlMs?: number;
  /** Most verified tokens remembered (default 10,000). */
  readonly cacheMaxEntries?: number;
  /** The clock, in ms since the epoch (tests pass a fake one; default Date.now). */
  readonly now?: () => number;
  /**
   * Told when a changed JWKS file cannot be used, or the JWKS URL cannot be fetched
   * (default process.emitWarning).
   */
  readonly onJwksReloadError?: (err: Error) => void;
}

/** The options with every default filled in. */
export type ResolvedJwtOptions = Required<
  Omit<JwtVerifierOptions, "hs256Secret" | "jwksFile" | "jwksUrl" | "issuer" | "audience">
> &
  Pick<JwtVerifierOptions, "hs256Secret" | "jwksFile" | "jwksUrl" | "issuer" | "audience">;

/** Shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the hash size). */
export const MIN_HS256_SECRET_BYTES = 32;

/** Fills in defaults and checks the options; throws AuthConfigError listing every problem. */
export function resolveJwtOptions(options: JwtVerifierOptions): ResolvedJwtOptions {
  const resolved: ResolvedJwtOptions = {
    ...options,
    jwksFileCheckIntervalMs: options.jwksFileCheckIntervalMs ?? 10_000,
    jwksUrlCooldownMs: options.jwksUrlCooldownMs ?? 30_000,
    jwksUrlCacheMaxAgeMs: options.jwksUrlCacheMaxAgeMs ?? 600_000,
    jwksUrlTimeoutMs: options.jwksUrlTimeoutMs ?? 5_000,
    jwksUrlAllowHttp: options.jwksUrlAllowHttp ?? false,
    clockToleranceSec: options.clockToleranceSec ?? 30,
    requireExp: options.requireExp ?? true,
    tenantClaim: options.tenantClaim ?? "tenant",
    rolesClaim: options.rolesClaim ?? "roles",
    commandsClaim: options.commandsClaim ?? "commands",
    cacheTtlMs: options.cacheTtlMs ?? 60_000,
    cacheMaxEntries: options.cacheMaxEntries ?? 10_000,
    now: options.now ?? Date.now,
    onJwksReloadError:
      options.onJwksReloadError ?? ((err) => process.emitWarning(err.message, "JwksReloadError")),
  };
  const problems: string[] = [];
  const { hs256Secret, jwksFile, jwksUrl } = resolved;
  if (hs256Secret === undefined && jwksFile === undefined && jwksUrl === undefined) {
    problems.push("set hs256Secret (HS256), jwksFile or jwksUrl (RS256/ES256)");
  }
  if (
    hs256Secret !== undefined &&
    Buffer.byteLength(hs256Secret, "utf8") < MIN_HS256_SECRET_BYTES
  ) {
    problems.push(
      `hs256Secret: must be at least ${MIN_HS256_SECRET_BYTES} bytes (generate one with \`openssl rand -base64 48\`)`,
    );
  }
  if (jwksFile !== undefined && jwksUrl !== undefined) {
    problems.push("jwksFile and jwksUrl: set one of them, not both");
  }
  if (jwksFile === "") problems.push("jwksFile: must not be empty");
  if (jwksUrl !== undefined) problems.push(...checkJwksUrl(jwksUrl, resolved.jwksUrlAllowHttp));
  for (const key of [
    "jwksFileCheckIntervalMs",
    "jwksUrlCooldownMs",
    "jwksUrlCacheMaxAgeMs",
    "jwksUrlTimeoutMs",
    "clockToleranceSec",
    "cacheTtlMs",
    "cacheMaxEntries",
  ] as const) {
    const value = resolved[key];
    if (!Number.isFinite(value) || value < 0) problems.push(`${key}: must be a number ≥ 0`);
  }
  for (const key of ["tenantClaim", "rolesClaim", "commandsClaim"] as const) {
    if (resolved[key] === "") problems.push(`${key}: must not be empty`);
  }
  for (const key of ["issuer", "audience"] as const) {
    const value = resolved[key];
    const values = typeof value === "string" ? [value] : (value ?? []);
    if (value !== undefined && (values.length === 0 || values.some((v) => v === ""))) {
      problems.push(`${key}: must be a non-empty string or a non-empty list of them`);
    }
  }
  if (problems.length > 0) {
    throw new AuthConfigError(formatProblems("invalid JWT verification settings:", problems), {
      problems,
    });
  }
  return resolved;
}

function checkJwksUrl(jwksUrl: string, allowHttp: boolean): string[] {
  let url: URL;
  try {
    url = new URL(jwksUrl);
  } catch {
    return [`jwksUrl: not a URL: ${jwksUrl}`];
  }
  const loopback = ["localhost", "127.0.0.1", "[::1]"].includes(url.hostname);
  if (url.protocol === "https:" || (url.protocol === "http:" && (loopback || allowHttp))) return [];
  return [
    url.protocol === "http:"
      ? "jwksUrl: must use https (keys fetched over plain http can be forged in transit); set jwksUrlAllowHttp to accept http"
      : `jwksUrl: must be an https URL, not ${url.protocol}`,
  ];
}
