/**
 * The package's typed errors. An `AuthError` refuses one call and carries the gRPC
 * status name the caller maps it to; its message says what to fix and never
 * contains the presented token. An `AuthConfigError` means the authentication
 * setup itself is unusable (a bad tokens file, a short secret, nothing configured)
 * and is meant to stop the process at startup with that message.
 */

/**
 * Why a call was refused, as a gRPC status name: UNAUTHENTICATED (no usable
 * credential), PERMISSION_DENIED (a valid credential that grants nothing here), or
 * UNAVAILABLE (the credential could not be checked now, e.g. the key set URL did
 * not answer; the caller may retry).
 */
export type AuthErrorCode = "UNAUTHENTICATED" | "PERMISSION_DENIED" | "UNAVAILABLE";

/** The message of an UNAVAILABLE refusal: the key source cannot be read now. */
export const CANNOT_CHECK_NOW = "the service cannot check credentials right now; retry later";

/** A call is refused; map `code` to the gRPC status of the same name. */
export class AuthError extends Error {
  override readonly name = "AuthError";

  constructor(
    readonly code: AuthErrorCode,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
  }
}

/** The authentication configuration is unusable; `problems` lists every reason. */
export class AuthConfigError extends Error {
  override readonly name = "AuthConfigError";
  readonly problems: readonly string[];

  constructor(message: string, options: { problems?: readonly string[]; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.problems = options.problems ?? [];
  }
}

/** True when `err` refuses a call (also for an AuthError from another realm). */
export function isAuthError(err: unknown): err is AuthError {
  return (
    err instanceof AuthError ||
    (typeof err === "object" && err !== null && (err as Error).name === "AuthError")
  );
}

export { formatProblems, messageOf, toError } from "@codeq/common";
