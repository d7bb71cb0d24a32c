import { AuthError } from "./errors";

const HOW = "send `authorization: Bearer <token>` metadata";

/**
 * The token of an `authorization: Bearer <token>` value. Throws UNAUTHENTICATED when
 * the metadata is missing, uses another scheme, or carries no token. The scheme is
 * matched case-insensitively (RFC 7235); messages never repeat the value, which may
 * be a secret sent without a scheme.
 */
export function bearerToken(authorization: string | undefined): string {
  const value = authorization?.trim() ?? "";
  if (value === "") throw new AuthError("UNAUTHENTICATED", `missing credentials: ${HOW}`);
  const match = /^(\S+)(?:\s+(.*))?$/s.exec(value);
  const scheme = match?.[1] ?? "";
  const token = match?.[2]?.trim() ?? "";
  if (scheme.toLowerCase() !== "bearer") {
    throw new AuthError(
      "UNAUTHENTICATED",
      `the authorization metadata must use the Bearer scheme: ${HOW}`,
    );
  }
  if (token === "") throw new AuthError("UNAUTHENTICATED", `the Bearer token is empty: ${HOW}`);
  if (/\s/.test(token)) {
    throw new AuthError("UNAUTHENTICATED", `the Bearer token contains whitespace: ${HOW}`);
  }
  return token;
}

/** True when `token` has the shape of a compact JWS (three dot-separated parts). */
export function looksLikeJwt(token: string): boolean {
  return token.split(".").length === 3;
}
