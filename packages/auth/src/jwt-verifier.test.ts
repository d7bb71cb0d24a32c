import { UnsecuredJWT } from "jose";
import { AuthConfigError } from "./errors";
import type { JwtVerifierOptions } from "./jwt-options";
import { JwtVerifier } from "./jwt-verifier";
import { fakeClock, refusal, SECRET, sign, signingKey, T0_MS, type SignOptions } from "./test/jwt";

const CLAIMS = { sub: "alice", tenant: "acme", roles: ["producer", "worker"] };

describe("JwtVerifier with HS256", () => {
  let clock: ReturnType<typeof fakeClock>;
  let verifier: JwtVerifier;
  const make = (options: Partial<JwtVerifierOptions> = {}) =>
    new JwtVerifier({ hs256Secret: SECRET, now: clock.now, ...options });
  const token = (claims: Record<string, unknown> = CLAIMS, options: SignOptions = {}) =>
    sign(claims, SECRET, { nowMs: clock.now(), ...options });

  beforeEach(() => {
    clock = fakeClock();
    verifier = make();
  });

  it("accepts a good token, with the identity from its claims", async () => {
    const jwt = await token({ ...CLAIMS, commands: ["resize-image"] });
    expect(await verifier.authenticate(`Bearer ${jwt}`)).toEqual({
      tenant: "acme",
      principal: "alice",
      roles: new Set(["producer", "worker"]),
      commands: ["resize-image"],
      // exp (an hour on) and the clock tolerance: as long as the token is accepted
      acceptedUntilMs: T0_MS + 3_600_000 + 30_000,
    });
  });

  it("says when a token stops being accepted, also from the cache; without exp, never", async () => {
    const until = T0_MS + 60_000 + 30_000;
    const jwt = await token(CLAIMS, { expInSec: 60 });
    expect((await verifier.verify(jwt)).acceptedUntilMs).toBe(until);
    clock.advance(1_000);
    expect((await verifier.verify(jwt)).acceptedUntilMs).toBe(until);
    expect(verifier.cache.hits).toBe(1);
    const lax = make({ requireExp: false });
    expect(await lax.verify(await token(CLAIMS, { expInSec: null }))).not.toHaveProperty(
      "acceptedUntilMs",
    );
  });

  it("refuses an expired token, and accepts one within the clock tolerance", async () => {
    const expired = await token(CLAIMS, { expInSec: -31 });
    const err = await refusal(verifier.verify(expired), "UNAUTHENTICATED", expired);
    expect(err.message).toMatch(/^token expired at 2029-12-31T23:59:29.000Z; obtain a new token$/);
    expect(await verifier.verify(await token(CLAIMS, { expInSec: -29 }))).toMatchObject({
      tenant: "acme",
    });
  });

  it("refuses a token that is not yet valid, beyond the clock tolerance only", async () => {
    const early = await token(CLAIMS, { nbfInSec: 31 });
    const err = await refusal(verifier.verify(early), "UNAUTHENTICATED", early);
    expect(err.message).toMatch(/not yet valid/);
    expect(await verifier.verify(await token(CLAIMS, { nbfInSec: 29 }))).toMatchObject({
      principal: "alice",
    });
  });

  it("honours a configured clock tolerance of 0", async () => {
    const strict = make({ clockToleranceSec: 0 });
    await refusal(strict.verify(await token(CLAIMS, { expInSec: -1 })), "UNAUTHENTICATED");
  });

  it("refuses a token signed with another secret", async () => {
    const forged = await sign(CLAIMS, `${SECRET}-but-another-one`, { nowMs: clock.now() });
    const err = await refusal(verifier.verify(forged), "UNAUTHENTICATED", forged);
    expect(err.message).toBe("token signature invalid");
  });

  it("refuses an unsigned token, an RS256 token and garbage", async () => {
    const unsigned = new UnsecuredJWT(CLAIMS).setExpirationTime(T0_MS / 1000 + 60).encode();
    const err = await refusal(verifier.verify(unsigned), "UNAUTHENTICATED", unsigned);
    expect(err.message).toBe("token algorithm not accepted; this service accepts HS256");
    const rsa = await sign(CLAIMS, await signingKey("RS256", "k1"), { nowMs: clock.now() });
    await refusal(verifier.verify(rsa), "UNAUTHENTICATED", rsa);
    const garbage = await refusal(verifier.verify("abc.def.ghi"), "UNAUTHENTICATED");
    expect(garbage.message).toMatch(/^token malformed/);
  });

  it("names the missing or invalid tenant claim", async () => {
    const noTenant = await token({ sub: "alice", roles: ["producer"] });
    expect((await refusal(verifier.verify(noTenant), "UNAUTHENTICATED")).message).toBe(
      'the token has no "tenant" claim naming the tenant',
    );
    for (const tenant of ["a/b", "", "x".repeat(129), 42]) {
      const bad = await token({ ...CLAIMS, tenant });
      expect((await refusal(verifier.verify(bad), "UNAUTHENTICATED")).message).toMatch(
        /^the token's "tenant" claim must be a tenant name matching/,
      );
    }
  });

  it("reads the tenant, roles and commands from configured claims", async () => {
    const custom = make({
      tenantClaim: "https://codeq.dev/tenant",
      rolesClaim: "codeq_roles",
      commandsClaim: "codeq_commands",
    });
    const jwt = await token({
      sub: "svc",
      "https://codeq.dev/tenant": "globex",
      codeq_roles: "worker cross-tenant-worker",
      codeq_commands: ["send-mail"],
      tenant: "ignored",
    });
    expect(await custom.verify(jwt)).toEqual({
      tenant: "globex",
      principal: "svc",
      roles: new Set(["worker", "cross-tenant-worker"]),
      commands: ["send-mail"],
      acceptedUntilMs: expect.any(Number),
    });
    const plain = await token(CLAIMS);
    expect((await refusal(custom.verify(plain), "UNAUTHENTICATED")).message).toMatch(
      /"https:\/\/codeq.dev\/tenant" claim/,
    );
  });

  it("ignores unknown roles but requires one codeQ role", async () => {
    const mixed = await token({ ...CLAIMS, roles: ["viewer", "producer", "billing:read"] });
    expect((await verifier.verify(mixed)).roles).toEqual(new Set(["producer"]));
    for (const roles of [["viewer"], [], ""]) {
      const none = await token({ ...CLAIMS, roles });
      expect((await refusal(verifier.verify(none), "PERMISSION_DENIED")).message).toMatch(
        /^the credential grants no codeQ role/,
      );
    }
    const absent = await token({ sub: "alice", tenant: "acme" });
    await refusal(verifier.verify(absent), "PERMISSION_DENIED");
    const wrongType = await token({ ...CLAIMS, roles: { producer: true } });
    expect((await refusal(verifier.verify(wrongType), "UNAUTHENTICATED")).message).toMatch(
      /"roles" claim must be an array of strings or a space-separated string/,
    );
  });

  it("maps OAuth scopes to roles when the token has no roles claim", async () => {
    const scoped = await token({
      sub: "alice",
      tenant: "acme",
      scope: "openid codeq:produce codeq:work:all-tenants profile",
    });
    expect((await verifier.verify(scoped)).roles).toEqual(
      new Set(["producer", "cross-tenant-worker"]),
    );
    const both = await token({ ...CLAIMS, roles: ["admin"], scope: "codeq:work" });
    expect((await verifier.verify(both)).roles).toEqual(new Set(["admin"]));
    const foreign = await token({ sub: "alice", tenant: "acme", scope: "openid email" });
    await refusal(verifier.verify(foreign), "PERMISSION_DENIED");
  });

  it("requires sub and, by default, exp", async () => {
    const noSub = await token({ tenant: "acme", roles: ["producer"] });
    expect((await refusal(verifier.verify(noSub), "UNAUTHENTICATED")).message).toMatch(/"sub"/);
    const noExp = await token(CLAIMS, { expInSec: null });
    expect((await refusal(verifier.verify(noExp), "UNAUTHENTICATED")).message).toBe(
      'the token has no "exp" claim',
    );
    expect(await make({ requireExp: false }).verify(noExp)).toMatchObject({ tenant: "acme" });
  });

  it("refuses bad command names", async () => {
    const bad = await token({ ...CLAIMS, commands: ["ok", "not ok"] });
    expect((await refusal(verifier.verify(bad), "UNAUTHENTICATED")).message).toMatch(
      /"commands" claim must list command names/,
    );
  });

  it("checks issuer and audience, naming which one is wrong", async () => {
    const checked = make({ issuer: "https://id.example", audience: ["codeq", "codeq-admin"] });
    const good = await token({ ...CLAIMS, iss: "https://id.example", aud: "codeq" });
    expect(await checked.verify(good)).toMatchObject({ tenant: "acme" });
    const wrongIss = await token({ ...CLAIMS, iss: "https://evil.example", aud: "codeq" });
    expect((await refusal(checked.verify(wrongIss), "UNAUTHENTICATED")).message).toBe(
      "token issuer (iss) is not accepted; expected https://id.example",
    );
    const wrongAud = await token({ ...CLAIMS, iss: "https://id.example", aud: "other" });
    expect((await refusal(checked.verify(wrongAud), "UNAUTHENTICATED")).message).toBe(
      "token audience (aud) is not accepted; expected codeq or codeq-admin",
    );
    const noIss = await token({ ...CLAIMS, aud: "codeq" });
    expect((await refusal(checked.verify(noIss), "UNAUTHENTICATED")).message).toBe(
      'the token has no "iss" claim',
    );
  });

  it("caches a verification, but not beyond the token's expiry or the ttl", async () => {
    const strict = make({ clockToleranceSec: 0 });
    const short = await token(CLAIMS, { expInSec: 10 });
    await strict.verify(short);
    await strict.verify(short);
    expect({ hits: strict.cache.hits, misses: strict.cache.misses }).toEqual({
      hits: 1,
      misses: 1,
    });
    clock.advance(10_000);
    expect((await refusal(strict.verify(short), "UNAUTHENTICATED")).message).toMatch(
      /^token expired/,
    );

    const long = await token(CLAIMS, { expInSec: 3600 });
    await strict.verify(long);
    clock.advance(59_000);
    await strict.verify(long);
    expect(strict.cache.hits).toBe(2);
    clock.advance(1_000);
    await strict.verify(long); // verified again after the 60 s ttl, and still good
    expect(strict.cache.hits).toBe(2);
  });

  it("refuses to start with a secret shorter than 32 bytes", () => {
    expect(() => new JwtVerifier({ hs256Secret: "too-short" })).toThrow(AuthConfigError);
    expect(() => new JwtVerifier({ hs256Secret: "x".repeat(31) })).toThrow(/at least 32 bytes/);
    expect(() => new JwtVerifier({})).toThrow(/set hs256Secret \(HS256\), jwksFile or jwksUrl/);
    expect(new JwtVerifier({ hs256Secret: "x".repeat(32) }).algorithms).toEqual(["HS256"]);
  });
});
