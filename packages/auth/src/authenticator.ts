import type { Identity } from "./identity";

/**
 * Establishes who is calling from the `authorization` metadata of a call. Rejects
 * with an AuthError whose `code` the caller maps to the gRPC status of that name.
 */
export interface Authenticator {
  authenticate(authorization: string | undefined): Promise<Identity>;
}

/** Something that recognises a bare token (the Bearer scheme already removed). */
export interface TokenVerifier {
  /** The identity of `token`; rejects with an AuthError when it is not accepted. */
  verify(token: string): Promise<Identity>;
}
