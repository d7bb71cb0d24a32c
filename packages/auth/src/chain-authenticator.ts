import type { Authenticator } from "./authenticator";
import { bearerToken, looksLikeJwt } from "./bearer";
import { AuthConfigError, AuthError } from "./errors";
import type { Identity } from "./identity";
import type { JwtVerifier } from "./jwt-verifier";
import type { StaticTokens, StaticTokensFile } from "./static-tokens";

/** The credential sources a ChainAuthenticator tries; at least one is required. */
export interface ChainSources {
  /** Tried first, by exact match: a fixed set, or a file read again when it changes. */
  readonly staticTokens?: StaticTokens | StaticTokensFile;
  /** Tried for tokens that have the shape of a JWT and are not static tokens. */
  readonly jwt?: JwtVerifier;
}

/**
 * One authenticator over several credential sources, so one router can accept both
 * static tokens and JWTs: a Bearer token that is one of the static tokens stands for
 * that token's identity; otherwise a token shaped like a JWT is verified as one.
 */
export class ChainAuthenticator implements Authenticator {
  readonly staticTokens: StaticTokens | StaticTokensFile | undefined;
  readonly jwt: JwtVerifier | undefined;

  constructor(sources: ChainSources) {
    if (!sources.staticTokens && !sources.jwt) {
      throw new AuthConfigError(
        "a ChainAuthenticator needs static tokens, a JWT verifier, or both",
      );
    }
    this.staticTokens = sources.staticTokens;
    this.jwt = sources.jwt;
  }

  async authenticate(authorization: string | undefined): Promise<Identity> {
    const token = bearerToken(authorization);
    const identity = await this.staticTokens?.lookup(token);
    if (identity) return identity;
    if (this.jwt && looksLikeJwt(token)) return this.jwt.verify(token);
    throw new AuthError("UNAUTHENTICATED", this.notRecognised());
  }

  private notRecognised(): string {
    if (!this.jwt) {
      return "the Bearer token is not one of this service's static tokens; check the token you were issued";
    }
    if (!this.staticTokens) {
      return "the Bearer token is not a JWT (three dot-separated parts); this service accepts JWTs only";
    }
    return "the Bearer token is neither one of this service's static tokens nor a JWT";
  }
}
