/** Test helpers: real keys and real signatures (jose), a fake clock, temp files. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload, type KeyLike } from "jose";
import { AuthError, type AuthErrorCode } from "../errors";

/** 2030-01-01T00:00:00Z: far from the real clock, so a test that forgets the fake clock fails. */
export const T0_MS = Date.UTC(2030, 0, 1);

/** A settable clock in ms since the epoch. */
export function fakeClock(startMs = T0_MS): { now: () => number; advance: (ms: number) => void } {
  let ms = startMs;
  return { now: () => ms, advance: (by) => void (ms += by) };
}

/** A 48-byte HS256 secret. */
export const SECRET = "0123456789abcdef0123456789abcdef-test-secret-48b";

export interface SigningKey {
  readonly alg: "RS256" | "ES256";
  readonly kid: string;
  readonly privateKey: KeyLike;
  /** The public key as a JWK with kid, alg and use set, ready for a JWKS. */
  readonly jwk: JWK;
}

/** A fresh key pair for `alg`, named `kid`. */
export async function signingKey(alg: "RS256" | "ES256", kid: string): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg);
  return { alg, kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
}

/** Options of `sign`: times are seconds relative to `nowMs`; null leaves the claim out. */
export interface SignOptions {
  nowMs?: number;
  expInSec?: number | null;
  nbfInSec?: number;
  /** Header kid (default: the key's). */
  kid?: string;
}

/** A compact JWT with `claims` (default exp: one hour after nowMs). */
export async function sign(
  claims: JWTPayload,
  key: SigningKey | string,
  options: SignOptions = {},
): Promise<string> {
  const nowSec = Math.floor((options.nowMs ?? T0_MS) / 1000);
  const secret = typeof key === "string";
  const jwt = new SignJWT(claims)
    .setProtectedHeader(
      secret
        ? { alg: "HS256", typ: "JWT" }
        : { alg: key.alg, kid: options.kid ?? key.kid, typ: "JWT" },
    )
    .setIssuedAt(nowSec);
  const expIn = options.expInSec === undefined ? 3600 : options.expInSec;
  if (expIn !== null) jwt.setExpirationTime(nowSec + expIn);
  if (options.nbfInSec !== undefined) jwt.setNotBefore(nowSec + options.nbfInSec);
  return jwt.sign(secret ? new TextEncoder().encode(key) : key.privateKey);
}

/** A fresh temp directory, removed by the returned function. */
export function tempDir(prefix = "codeq-auth-"): { dir: string; remove: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Writes a JWKS of `keys` to `file` (via a rename, as deployments replace files). */
export function writeJwks(file: string, keys: readonly SigningKey[]): void {
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ keys: keys.map((k) => k.jwk) }));
  fs.renameSync(tmp, file);
}

/**
 * The AuthError `promise` rejects with, after checking its code and that its message
 * does not contain `token` (a refusal must never echo the credential).
 */
export async function refusal(
  promise: Promise<unknown>,
  code: AuthErrorCode,
  token?: string,
): Promise<AuthError> {
  const err = await promise.then(
    () => {
      throw new Error(`expected an AuthError ${code}, but the call succeeded`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuthError);
  const authError = err as AuthError;
  expect({ code: authError.code, message: authError.message }).toMatchObject({ code });
  if (token) expect(authError.message).not.toContain(token);
  return authError;
}
