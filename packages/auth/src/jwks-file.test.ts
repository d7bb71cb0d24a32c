import * as fs from "node:fs";
import * as path from "node:path";
import { AuthConfigError } from "./errors";
import { JwtVerifier } from "./jwt-verifier";
import {
  fakeClock,
  refusal,
  SECRET,
  sign,
  signingKey,
  tempDir,
  writeJwks,
  type SigningKey,
} from "./test/jwt";

const CLAIMS = { sub: "svc-1", tenant: "acme", roles: ["worker"] };

describe("JwtVerifier with a JWKS file", () => {
  let tmp: ReturnType<typeof tempDir>;
  let file: string;
  let clock: ReturnType<typeof fakeClock>;
  let rsa: SigningKey;
  let ec: SigningKey;
  let reloadErrors: Error[];
  const make = () =>
    new JwtVerifier({
      jwksFile: file,
      jwksFileCheckIntervalMs: 10_000,
      now: clock.now,
      onJwksReloadError: (err) => reloadErrors.push(err),
    });
  const token = (key: SigningKey, claims: Record<string, unknown> = CLAIMS, kid?: string) =>
    sign(claims, key, { nowMs: clock.now(), ...(kid !== undefined && { kid }) });

  beforeAll(async () => {
    [rsa, ec] = await Promise.all([signingKey("RS256", "rsa-1"), signingKey("ES256", "ec-1")]);
  });
  beforeEach(() => {
    tmp = tempDir();
    file = path.join(tmp.dir, "jwks.json");
    clock = fakeClock();
    reloadErrors = [];
    writeJwks(file, [rsa, ec]);
  });
  afterEach(() => tmp.remove());

  it("verifies RS256 and ES256 tokens with keys from the file", async () => {
    const verifier = make();
    expect(verifier.algorithms).toEqual(["RS256", "ES256"]);
    expect(await verifier.verify(await token(rsa))).toEqual({
      tenant: "acme",
      principal: "svc-1",
      roles: new Set(["worker"]),
      acceptedUntilMs: expect.any(Number),
    });
    expect((await verifier.verify(await token(ec, { ...CLAIMS, sub: "svc-2" }))).principal).toBe(
      "svc-2",
    );
  });

  it("refuses a token signed by a key not in the set", async () => {
    const stranger = await signingKey("RS256", "stranger");
    const jwt = await token(stranger);
    const err = await refusal(make().verify(jwt), "UNAUTHENTICATED", jwt);
    expect(err.message).toMatch(/^token signature invalid: it was signed by a key the service/);
    // The same foreign key claiming a known kid fails the signature check instead.
    const impostor = await token(stranger, CLAIMS, "rsa-1");
    expect((await refusal(make().verify(impostor), "UNAUTHENTICATED")).message).toBe(
      "token signature invalid",
    );
  });

  it("refuses HS256 tokens when only public keys are configured", async () => {
    const hs = await sign(CLAIMS, SECRET, { nowMs: clock.now() });
    expect((await refusal(make().verify(hs), "UNAUTHENTICATED")).message).toBe(
      "token algorithm not accepted; this service accepts RS256, ES256",
    );
  });

  it("picks up a rotated key at once when a token names an unknown kid", async () => {
    const verifier = make();
    await verifier.verify(await token(rsa));
    const next = await signingKey("RS256", "rsa-2");
    writeJwks(file, [next, ec]); // rsa-1 retired
    expect(await verifier.verify(await token(next))).toMatchObject({ tenant: "acme" });
    expect(verifier.jwksFile?.reloads).toBe(1);
    // A token with the retired kid (not cached) no longer verifies; the file is not re-read.
    const retired = await token(rsa, { ...CLAIMS, sub: "late" });
    await refusal(verifier.verify(retired), "UNAUTHENTICATED");
    expect(verifier.jwksFile?.reloads).toBe(1);
  });

  it("notices a replaced key under the same kid after the check interval", async () => {
    const verifier = make();
    await verifier.verify(await token(rsa));
    const replacement = await signingKey("RS256", "rsa-1");
    writeJwks(file, [replacement, ec]);
    const fresh = await token(replacement, { ...CLAIMS, sub: "after-rotation" });
    await refusal(verifier.verify(fresh), "UNAUTHENTICATED"); // old key still loaded
    clock.advance(10_000);
    expect((await verifier.verify(fresh)).principal).toBe("after-rotation");
    const old = await token(rsa, { ...CLAIMS, sub: "old-key" });
    expect((await refusal(verifier.verify(old), "UNAUTHENTICATED")).message).toBe(
      "token signature invalid",
    );
  });

  it("keeps the last good key set when the file turns bad, and reports it", async () => {
    const verifier = make();
    fs.writeFileSync(file, "{ not json");
    clock.advance(10_000);
    expect((await verifier.verify(await token(ec))).tenant).toBe("acme");
    expect(reloadErrors).toHaveLength(1);
    expect(reloadErrors[0]?.message).toContain(`JWKS file ${file} changed but cannot be used`);
    expect(verifier.jwksFile?.reloadErrors).toBe(1);
  });

  it("is not made to re-read a bad file by tokens naming unknown key ids", async () => {
    const verifier = make();
    fs.writeFileSync(file, "{ not json");
    const stranger = await signingKey("RS256", "nobody");
    for (let i = 0; i < 20; i++) {
      await refusal(
        verifier.verify(await token(stranger, { ...CLAIMS, sub: `s${i}` })),
        "UNAUTHENTICATED",
      );
      clock.advance(1_000); // past the cooldown of unknown key ids: the file is looked at
    }
    // the same bad file is read and reported once
    expect(verifier.jwksFile?.reloadErrors).toBe(1);
    expect(reloadErrors).toHaveLength(1);
  });

  it("refuses to start with a missing, malformed or empty file", () => {
    const missing = path.join(tmp.dir, "absent.json");
    expect(() => new JwtVerifier({ jwksFile: missing })).toThrow(AuthConfigError);
    expect(() => new JwtVerifier({ jwksFile: missing })).toThrow(`cannot use JWKS file ${missing}`);
    fs.writeFileSync(file, JSON.stringify({ keys: [] }));
    expect(() => new JwtVerifier({ jwksFile: file })).toThrow(/non-empty "keys" array/);
    fs.writeFileSync(file, "[]");
    expect(() => new JwtVerifier({ jwksFile: file })).toThrow(AuthConfigError);
  });

  it("takes both HS256 and JWKS tokens when both are configured", async () => {
    const both = new JwtVerifier({ hs256Secret: SECRET, jwksFile: file, now: clock.now });
    expect(both.algorithms).toEqual(["HS256", "RS256", "ES256"]);
    expect((await both.verify(await sign(CLAIMS, SECRET, { nowMs: clock.now() }))).tenant).toBe(
      "acme",
    );
    expect((await both.verify(await token(ec))).tenant).toBe("acme");
  });
});
