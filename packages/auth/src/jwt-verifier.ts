/**
 * Verifies JWT bearer tokens: HS256 with a shared secret, RS256 and ES256 with keys
 * from a JWKS file or URL. Each algorithm is verified only with its own kind of key
 * (an HS256 token never meets a public key), the issuer, audience and time claims
 * are checked with a clock tolerance, and the identity comes from the token's claims
 * only. Successful verifications are cached briefly (see VerificationCache).
 */
import { jwtVerify, type FlattenedJWSInput, type JWSHeaderParameters, type KeyLike } from "jose";
import type { Authenticator, TokenVerifier } from "./authenticator";
import { bearerToken } from "./bearer";
import { identityFromClaims } from "./claims";
import { AuthError, CANNOT_CHECK_NOW, isAuthError, messageOf } from "./errors";
import type { Identity } from "./identity";
import { JwksFile, type KeyResolver } from "./jwks-file";
import { JwksUrl } from "./jwks-url";
import { resolveJwtOptions, type JwtVerifierOptions, type ResolvedJwtOptions } from "./jwt-options";
import { VerificationCache } from "./verification-cache";

export class JwtVerifier implements Authenticator, TokenVerifier {
  readonly options: Readonly<ResolvedJwtOptions>;
  /** The algorithms accepted, given the configured keys. */
  readonly algorithms: readonly string[];
  /** Recently verified tokens. */
  readonly cache: VerificationCache;
  /** The JWKS file source, when configured (its counters tell reloads and errors). */
  readonly jwksFile: JwksFile | undefined;
  /** The JWKS URL source, when configured (its counters tell fetches and errors). */
  readonly jwksUrl: JwksUrl | undefined;
  private readonly secret: Uint8Array | undefined;
  private readonly publicKeys: KeyResolver | undefined;

  /** Throws AuthConfigError when the options are unusable (short secret, bad URL, unreadable JWKS file). */
  constructor(options: JwtVerifierOptions) {
    const o = resolveJwtOptions(options);
    this.options = Object.freeze(o);
    this.secret = o.hs256Secret !== undefined ? new TextEncoder().encode(o.hs256Secret) : undefined;
    if (o.jwksFile !== undefined) {
      this.jwksFile = new JwksFile(o.jwksFile, {
        checkIntervalMs: o.jwksFileCheckIntervalMs,
        now: o.now,
        onReloadError: o.onJwksReloadError,
      });
      this.publicKeys = this.jwksFile.getKey;
    } else if (o.jwksUrl !== undefined) {
      this.jwksUrl = new JwksUrl(o.jwksUrl, {
        cooldownMs: o.jwksUrlCooldownMs,
        cacheMaxAgeMs: o.jwksUrlCacheMaxAgeMs,
        timeoutMs: o.jwksUrlTimeoutMs,
        now: o.now,
        onFetchError: o.onJwksReloadError,
      });
      this.publicKeys = this.jwksUrl.getKey;
    }
    this.algorithms = [
      ...(this.secret ? ["HS256"] : []),
      ...(this.publicKeys ? ["RS256", "ES256"] : []),
    ];
    this.cache = new VerificationCache({
      ttlMs: o.cacheTtlMs,
      maxEntries: o.cacheMaxEntries,
      now: o.now,
    });
  }

  async authenticate(authorization: string | undefined): Promise<Identity> {
    return this.verify(bearerToken(authorization));
  }

  /** The identity of a compact JWT; rejects with an AuthError saying why it is not accepted. */
  async verify(token: string): Promise<Identity> {
    const cached = this.cache.get(token);
    if (cached) return cached;
    const o = this.options;
    let payload;
    try {
      ({ payload } = await jwtVerify(token, this.getKey, {
        algorithms: [...this.algorithms],
        ...(o.issuer !== undefined && { issuer: toArray(o.issuer) }),
        ...(o.audience !== undefined && { audience: toArray(o.audience) }),
        clockTolerance: o.clockToleranceSec,
        currentDate: new Date(o.now()),
        requiredClaims: o.requireExp ? ["exp"] : [],
      }));
    } catch (err) {
      throw this.refusal(err);
    }
    // as long as jose itself would accept the token: cached no longer, streams end then
    const acceptedUntilMs =
      payload.exp !== undefined ? (payload.exp + o.clockToleranceSec) * 1000 : undefined;
    const claimed = identityFromClaims(payload, o);
    const identity =
      acceptedUntilMs !== undefined ? Object.freeze({ ...claimed, acceptedUntilMs }) : claimed;
    this.cache.set(token, identity, acceptedUntilMs);
    return identity;
  }

  /** Each algorithm gets only its own kind of key. */
  private readonly getKey = async (
    header: JWSHeaderParameters,
    token: FlattenedJWSInput,
  ): Promise<KeyLike | Uint8Array> => {
    if (header.alg === "HS256" && this.secret) return this.secret;
    if ((header.alg === "RS256" || header.alg === "ES256") && this.publicKeys) {
      return this.publicKeys(header, token);
    }
    // Unreachable while `algorithms` is passed to jose, which refuses other algorithms first.
    throw this.algorithmRefused();
  };

  /** An AuthError for anything jwtVerify threw. The token itself is never part of the message. */
  private refusal(err: unknown): unknown {
    if (isAuthError(err)) return err;
    const e = err as {
      code?: unknown;
      claim?: unknown;
      reason?: unknown;
      payload?: { exp?: unknown };
    };
    const no = (message: string) => new AuthError("UNAUTHENTICATED", message, { cause: err });
    switch (e.code) {
      case "ERR_JWT_EXPIRED":
        return no(`token expired${expiredAt(e.payload?.exp)}; obtain a new token`);
      case "ERR_JWT_CLAIM_VALIDATION_FAILED":
        return no(this.claimProblem(String(e.claim), String(e.reason)));
      case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
        return no("token signature invalid");
      case "ERR_JWKS_NO_MATCHING_KEY":
        return no(
          "token signature invalid: it was signed by a key the service does not know (no key matches its kid and algorithm)",
        );
      case "ERR_JWKS_MULTIPLE_MATCHING_KEYS":
        return no(
          "token has no kid header and several keys could have signed it; issue tokens with a kid",
        );
      case "ERR_JOSE_ALG_NOT_ALLOWED":
        return this.algorithmRefused(err);
      case "ERR_JWS_INVALID":
      case "ERR_JWT_INVALID":
      case "ERR_JOSE_NOT_SUPPORTED":
        return no(`token malformed: ${messageOf(err)}; send a compact JWS`);
      case "ERR_JWK_INVALID":
      case "ERR_JWKS_INVALID":
      case "ERR_JWKS_TIMEOUT":
        return new AuthError("UNAVAILABLE", CANNOT_CHECK_NOW, { cause: err });
      default:
        if (typeof e.code === "string" && e.code.startsWith("ERR_J")) {
          return no(`token rejected: ${messageOf(err)}`);
        }
        return err;
    }
  }

  private claimProblem(claim: string, reason: string): string {
    if (reason === "missing") return `the token has no "${claim}" claim`;
    if (reason === "invalid") return `the token's "${claim}" claim is malformed`;
    const o = this.options;
    switch (claim) {
      case "nbf":
        return "token not yet valid (its nbf is in the future; check the issuer's clock)";
      case "iat":
        return "token issued in the future (its iat is ahead; check the issuer's clock)";
      case "iss":
        return `token issuer (iss) is not accepted; expected ${toArray(o.issuer ?? []).join(" or ")}`;
      case "aud":
        return `token audience (aud) is not accepted; expected ${toArray(o.audience ?? []).join(" or ")}`;
      default:
        return `token "${claim}" claim check failed`;
    }
  }

  private algorithmRefused(cause?: unknown): AuthError {
    return new AuthError(
      "UNAUTHENTICATED",
      `token algorithm not accepted; this service accepts ${this.algorithms.join(", ")}`,
      { cause },
    );
  }
}

function toArray(value: string | readonly string[]): string[] {
  return typeof value === "string" ? [value] : [...value];
}

function expiredAt(exp: unknown): string {
  return typeof exp === "number" ? ` at ${new Date(exp * 1000).toISOString()}` : "";
}
