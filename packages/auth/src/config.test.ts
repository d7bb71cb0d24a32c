import * as fs from "node:fs";
import * as path from "node:path";
import { ChainAuthenticator } from "./chain-authenticator";
import { authenticatorFromConfig } from "./config";
import { AuthConfigError } from "./errors";
import { fakeClock, refusal, SECRET, sign, tempDir } from "./test/jwt";

const STATIC_TOKEN = "static-token-for-tests-0001";
const JWT_CLAIMS = { sub: "alice", tenant: "globex", roles: ["admin"] };

describe("authenticatorFromConfig", () => {
  let tmp: ReturnType<typeof tempDir>;
  let tokensFile: string;
  const clock = fakeClock();

  beforeEach(() => {
    tmp = tempDir();
    tokensFile = path.join(tmp.dir, "tokens.yaml");
    fs.writeFileSync(
      tokensFile,
      `tokens:\n  - token: ${STATIC_TOKEN}\n    tenant: acme\n    roles: [producer]\n`,
    );
  });
  afterEach(() => tmp.remove());

  it("takes static tokens and JWTs in one chain", async () => {
    const auth = authenticatorFromConfig(
      { tokensFile, jwt: { hs256Secret: SECRET } },
      { now: clock.now },
    );
    expect((await auth.authenticate(`Bearer ${STATIC_TOKEN}`)).tenant).toBe("acme");
    const jwt = await sign(JWT_CLAIMS, SECRET, { nowMs: clock.now() });
    expect((await auth.authenticate(`Bearer ${jwt}`)).tenant).toBe("globex");
    const unknown = "neither-static-nor-jwt";
    expect(
      (await refusal(auth.authenticate(`Bearer ${unknown}`), "UNAUTHENTICATED", unknown)).message,
    ).toBe("the Bearer token is neither one of this service's static tokens nor a JWT");
    await refusal(auth.authenticate(undefined), "UNAUTHENTICATED");
  });

  it("reads the static tokens file again when it changes: a token taken out is refused, one added taken, without a restart", async () => {
    const errors: Error[] = [];
    const auth = authenticatorFromConfig(
      { tokensFile, tokensFileCheckIntervalMs: 10_000 },
      { now: clock.now, onTokensReloadError: (err) => errors.push(err) },
    );
    const ADDED = "static-token-for-tests-0002";
    expect((await auth.authenticate(`Bearer ${STATIC_TOKEN}`)).tenant).toBe("acme");
    // the first token withdrawn, another issued (written to a new file renamed over it)
    const next = `${tokensFile}.new`;
    fs.writeFileSync(
      next,
      `tokens:\n  - token: ${ADDED}\n    tenant: initech\n    roles: [worker]\n`,
    );
    fs.renameSync(next, tokensFile);
    // not looked at before the interval is over
    expect((await auth.authenticate(`Bearer ${STATIC_TOKEN}`)).tenant).toBe("acme");
    clock.advance(10_000);
    await refusal(auth.authenticate(`Bearer ${STATIC_TOKEN}`), "UNAUTHENTICATED", STATIC_TOKEN);
    expect((await auth.authenticate(`Bearer ${ADDED}`)).tenant).toBe("initech");
    // a file broken by a bad edit keeps the last good tokens, and is reported once
    fs.writeFileSync(tokensFile, "tokens: [");
    clock.advance(10_000);
    expect((await auth.authenticate(`Bearer ${ADDED}`)).tenant).toBe("initech");
    clock.advance(10_000);
    expect((await auth.authenticate(`Bearer ${ADDED}`)).tenant).toBe("initech");
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toContain(
      `static tokens file ${tokensFile} changed but cannot be used (keeping the last good one)`,
    );
    expect(errors[0]!.message).not.toContain(ADDED);
  });

  it("with static tokens only, refuses a JWT as an unknown token", async () => {
    const auth = authenticatorFromConfig({ tokensFile });
    const jwt = await sign(JWT_CLAIMS, SECRET, { nowMs: clock.now() });
    expect(
      (await refusal(auth.authenticate(`Bearer ${jwt}`), "UNAUTHENTICATED", jwt)).message,
    ).toMatch(/not one of this service's static tokens/);
  });

  it("with JWTs only, says a non-JWT token is not one", async () => {
    const auth = authenticatorFromConfig({ jwt: { hs256Secret: SECRET } });
    expect(
      (await refusal(auth.authenticate(`Bearer ${STATIC_TOKEN}`), "UNAUTHENTICATED")).message,
    ).toMatch(/not a JWT/);
  });

  it("refuses a config with nothing configured", () => {
    expect(() => authenticatorFromConfig({})).toThrow(AuthConfigError);
    expect(() => authenticatorFromConfig({})).toThrow(/authentication is not configured/);
    expect(() => new ChainAuthenticator({})).toThrow(AuthConfigError);
  });

  it("lists every problem of a bad config", () => {
    let err: AuthConfigError | undefined;
    try {
      authenticatorFromConfig({
        tokenFile: "typo",
        jwt: { hs256Secret: SECRET, clockToleranceSec: -1, issuer: [] },
      } as never);
    } catch (e) {
      err = e as AuthConfigError;
    }
    expect(err).toBeInstanceOf(AuthConfigError);
    expect(err?.problems).toEqual([
      expect.stringMatching(/^jwt\.issuer: /),
      expect.stringMatching(/^jwt\.clockToleranceSec: /),
      expect.stringMatching(/^\(config\): Unrecognized key: "tokenFile"/),
    ]);
  });

  it("passes on the errors of its parts: a bad tokens file, a short secret", () => {
    fs.writeFileSync(tokensFile, "tokens: [{ tenant: acme }]");
    expect(() => authenticatorFromConfig({ tokensFile })).toThrow(
      `invalid static tokens file ${tokensFile}`,
    );
    expect(() => authenticatorFromConfig({ jwt: { hs256Secret: "short" } })).toThrow(
      /hs256Secret: must be at least 32 bytes/,
    );
    expect(() => authenticatorFromConfig({ jwt: {} })).toThrow(/set hs256Secret/);
  });
});
