/**
 * Builds the authenticator a service runs with from a plain configuration object
 * (as read from a config file or assembled from environment variables):
 *
 *   { tokensFile?: string, jwt?: { hs256Secret?, jwksFile?, jwksUrl?, issuer?, ... } }
 *
 * Every jwt field is documented on JwtVerifierOptions. The object is validated
 * strictly (unknown fields too), and a configuration that accepts no credential at
 * all is refused: a service that means to run without authentication says so with
 * its development-identity switch, not with an empty auth section.
 */
import { z } from "zod";
import { ChainAuthenticator } from "./chain-authenticator";
import { AuthConfigError, formatProblems } from "./errors";
import type { JwtVerifierOptions } from "./jwt-options";
import { JwtVerifier } from "./jwt-verifier";
import { StaticTokensFile } from "./static-tokens";

/** The serialisable JWT settings (JwtVerifierOptions without the runtime hooks). */
export type JwtSettings = Omit<JwtVerifierOptions, "now" | "onJwksReloadError">;

/** Where credentials are checked. At least one of tokensFile and jwt is required. */
export interface AuthConfig {
  /** Path of a static tokens file (YAML or JSON); see StaticTokens. Read again when it changes. */
  readonly tokensFile?: string;
  /** Least time between two checks of the tokens file for changes, ms (default 10 s). */
  readonly tokensFileCheckIntervalMs?: number;
  /** JWT verification settings; see JwtVerifierOptions. */
  readonly jwt?: JwtSettings;
}

/** Hooks that do not belong in a config file. */
export interface AuthRuntime {
  /** The clock, in ms since the epoch (tests pass a fake one). */
  readonly now?: () => number;
  /** Told when a changed JWKS file cannot be used (e.g. a logger's warn; default process.emitWarning). */
  readonly onJwksReloadError?: (err: Error) => void;
  /** Told when a changed static tokens file cannot be used (default process.emitWarning). */
  readonly onTokensReloadError?: (err: Error) => void;
}

const ms = z.number().finite().nonnegative();
const oneOrMore = z.union([z.string().min(1), z.array(z.string().min(1)).min(1).readonly()]);

const jwtSettingsSchema = z.strictObject({
  hs256Secret: z.string().optional(),
  jwksFile: z.string().min(1).optional(),
  jwksFileCheckIntervalMs: ms.optional(),
  jwksUrl: z.string().min(1).optional(),
  jwksUrlCooldownMs: ms.optional(),
  jwksUrlCacheMaxAgeMs: ms.optional(),
  jwksUrlTimeoutMs: ms.optional(),
  jwksUrlAllowHttp: z.boolean().optional(),
  issuer: oneOrMore.optional(),
  audience: oneOrMore.optional(),
  clockToleranceSec: ms.optional(),
  requireExp: z.boolean().optional(),
  tenantClaim: z.string().min(1).optional(),
  rolesClaim: z.string().min(1).optional(),
  commandsClaim: z.string().min(1).optional(),
  cacheTtlMs: ms.optional(),
  cacheMaxEntries: z.number().int().nonnegative().optional(),
}) satisfies z.ZodType<JwtSettings>;

/** Schema of AuthConfig, for services that embed it in their own configuration schema. */
export const authConfigSchema = z.strictObject({
  tokensFile: z.string().min(1).optional(),
  tokensFileCheckIntervalMs: ms.optional(),
  jwt: jwtSettingsSchema.optional(),
}) satisfies z.ZodType<AuthConfig>;

/**
 * The authenticator for `config`: static tokens first, then JWTs. Throws
 * AuthConfigError listing every problem (unknown fields, a bad tokens file, a short
 * secret, an unreadable JWKS file, nothing configured).
 */
export function authenticatorFromConfig(
  config: AuthConfig,
  runtime: AuthRuntime = {},
): ChainAuthenticator {
  const parsed = authConfigSchema.safeParse(config);
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (issue) => `${issue.path.join(".") || "(config)"}: ${issue.message}`,
    );
    throw new AuthConfigError(formatProblems("invalid authentication config:", problems), {
      problems,
    });
  }
  const { tokensFile, tokensFileCheckIntervalMs, jwt } = parsed.data;
  if (tokensFile === undefined && jwt === undefined) {
    throw new AuthConfigError(
      "authentication is not configured: set tokensFile (static tokens) and/or jwt (hs256Secret, jwksFile or jwksUrl)",
    );
  }
  return new ChainAuthenticator({
    ...(tokensFile !== undefined && {
      staticTokens: new StaticTokensFile(tokensFile, {
        checkIntervalMs: tokensFileCheckIntervalMs,
        ...(runtime.now && { now: runtime.now }),
        ...(runtime.onTokensReloadError && { onReloadError: runtime.onTokensReloadError }),
      }),
    }),
    ...(jwt !== undefined && { jwt: new JwtVerifier({ ...jwt, ...runtime }) }),
  });
}
