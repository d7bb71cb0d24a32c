/**
 * @codeq/auth: establishes who is calling from the `authorization` metadata of a
 * gRPC call. Static bearer tokens from a file and JWTs (HS256; RS256/ES256 with keys
 * from a JWKS file or URL). The tenant comes from the credential only. Callers map
 * an AuthError's `code` to the gRPC status of the same name.
 */
export type { Authenticator, TokenVerifier } from "./authenticator";
export { bearerToken, looksLikeJwt } from "./bearer";
export { ChainAuthenticator, type ChainSources } from "./chain-authenticator";
export { identityFromClaims, SCOPE_ROLES, type ClaimNames } from "./claims";
export {
  authConfigSchema,
  authenticatorFromConfig,
  type AuthConfig,
  type AuthRuntime,
  type JwtSettings,
} from "./config";
export {
  AuthConfigError,
  AuthError,
  isAuthError,
  messageOf,
  toError,
  type AuthErrorCode,
} from "./errors";
export {
  COMMAND_PATTERN,
  isRole,
  ROLES,
  TENANT_PATTERN,
  type Identity,
  type Role,
} from "./identity";
export { JwksFile, type JwksFileOptions } from "./jwks-file";
export { JwksUrl, type JwksUrlOptions } from "./jwks-url";
export {
  MIN_HS256_SECRET_BYTES,
  resolveJwtOptions,
  type JwtVerifierOptions,
  type ResolvedJwtOptions,
} from "./jwt-options";
export { JwtVerifier } from "./jwt-verifier";
export {
  loadStaticTokens,
  MIN_STATIC_TOKEN_LENGTH,
  parseStaticTokens,
  StaticTokens,
  StaticTokensFile,
  tokenSha256,
} from "./static-tokens";
export { WatchedFile, type WatchedFileOptions } from "./watched-file";
export { VerificationCache, type VerificationCacheOptions } from "./verification-cache";
