import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { AuthConfigError } from "./errors";
import type { JwtVerifierOptions } from "./jwt-options";
import { JwtVerifier } from "./jwt-verifier";
import { refusal, sign, signingKey, type SigningKey } from "./test/jwt";

const CLAIMS = { sub: "svc", tenant: "acme", roles: ["producer"] };

/** A real HTTP server answering every request with the current key set, counting requests. */
async function jwksServer(keys: SigningKey[]) {
  const state = { keys, requests: 0, status: 200, hold: false, held: [] as (() => void)[] };
  const server = http.createServer((_req, res) => {
    state.requests++;
    const answer = () => {
      res.writeHead(state.status, { "content-type": "application/json" });
      res.end(JSON.stringify({ keys: state.keys.map((k) => k.jwk) }));
    };
    if (state.hold) state.held.push(answer);
    else answer();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return { state, url, close };
}

describe("JwtVerifier with a JWKS URL", () => {
  let rsa: SigningKey;
  let ec: SigningKey;
  let server: Awaited<ReturnType<typeof jwksServer>>;
  // Real time: jose's remote key set keeps its own clock for cooldown and cache age.
  const token = (key: SigningKey, sub = "svc") =>
    sign({ ...CLAIMS, sub }, key, { nowMs: Date.now() });

  beforeAll(async () => {
    [rsa, ec] = await Promise.all([signingKey("RS256", "rsa-1"), signingKey("ES256", "ec-1")]);
  });
  beforeEach(async () => {
    server = await jwksServer([rsa, ec]);
  });
  afterEach(() => server.close());

  it("fetches the key set once and serves later tokens from it", async () => {
    const verifier = new JwtVerifier({ jwksUrl: server.url });
    expect(server.state.requests).toBe(0);
    expect((await verifier.verify(await token(rsa, "a"))).principal).toBe("a");
    expect((await verifier.verify(await token(ec, "b"))).principal).toBe("b");
    expect((await verifier.verify(await token(rsa, "c"))).principal).toBe("c");
    expect(server.state.requests).toBe(1);
  });

  it("does not refetch for an unknown kid during the cooldown", async () => {
    const verifier = new JwtVerifier({ jwksUrl: server.url });
    await verifier.verify(await token(rsa));
    const stranger = await signingKey("ES256", "stranger");
    for (const sub of ["x", "y", "z"]) {
      const jwt = await token(stranger, sub);
      expect((await refusal(verifier.verify(jwt), "UNAUTHENTICATED", jwt)).message).toMatch(
        /signed by a key the service does not know/,
      );
    }
    expect(server.state.requests).toBe(1);
  });

  it("fetches again for an unknown kid after the cooldown, picking up a rotated key", async () => {
    const verifier = new JwtVerifier({ jwksUrl: server.url, jwksUrlCooldownMs: 50 });
    await verifier.verify(await token(rsa));
    const next = await signingKey("RS256", "rsa-2");
    server.state.keys = [next];
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect((await verifier.verify(await token(next, "rotated"))).principal).toBe("rotated");
    expect(server.state.requests).toBe(2);
  });

  it("answers UNAVAILABLE when the key set cannot be fetched", async () => {
    server.state.status = 500;
    const failing = new JwtVerifier({ jwksUrl: server.url });
    const err = await refusal(failing.verify(await token(rsa)), "UNAVAILABLE");
    expect(err.message).toBe("the service cannot check credentials right now; retry later");
    expect(String((err.cause as Error).message)).toContain(
      `cannot fetch the JWKS from ${server.url}`,
    );

    const url = server.url;
    await server.close();
    const down = new JwtVerifier({ jwksUrl: url, jwksUrlTimeoutMs: 1000 });
    await refusal(down.verify(await token(rsa)), "UNAVAILABLE");
  });

  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  async function until(check: () => boolean): Promise<void> {
    for (let i = 0; !check(); i++) {
      if (i > 250) throw new Error("not within 5 s");
      await sleep(20);
    }
  }
  /** A verifier without the verification cache: every call asks the key set. */
  const uncached = (options: Partial<JwtVerifierOptions> = {}) => {
    const errors: Error[] = [];
    const verifier = new JwtVerifier({
      jwksUrl: server.url,
      cacheTtlMs: 0,
      onJwksReloadError: (err) => errors.push(err),
      ...options,
    });
    return { verifier, errors, source: verifier.jwksUrl! };
  };

  it("keeps verifying with the last key set while the URL fails, fetching in the background with a backoff", async () => {
    const { verifier, errors, source } = uncached({ jwksUrlCacheMaxAgeMs: 50 });
    await verifier.verify(await token(rsa, "a"));
    server.state.status = 500;
    await sleep(60);
    // stale: fetched again in the background, and the keys in hand verify meanwhile
    expect((await verifier.verify(await token(rsa, "b"))).principal).toBe("b");
    await until(() => errors.length === 1);
    expect(errors[0]!.message).toMatch(
      /^cannot fetch the JWKS from .* \(keeping the last good key set\): HTTP status 500$/,
    );
    expect((await verifier.verify(await token(ec, "c"))).principal).toBe("c");
    expect(server.state.requests).toBe(2); // within the backoff: not asked again
    server.state.status = 200;
    await sleep(1_050);
    await verifier.verify(await token(rsa, "d"));
    await until(() => source.fetches === 2);
    expect({ requests: server.state.requests, errors: source.fetchErrors }).toEqual({
      requests: 3,
      errors: 1,
    });
  });

  it("makes no call wait for a fetch that hangs while it has keys", async () => {
    const { verifier } = uncached({ jwksUrlCacheMaxAgeMs: 50, jwksUrlTimeoutMs: 10_000 });
    await verifier.verify(await token(rsa, "a"));
    server.state.hold = true;
    await sleep(60);
    expect((await verifier.verify(await token(rsa, "b"))).principal).toBe("b");
    expect((await verifier.verify(await token(ec, "c"))).principal).toBe("c");
    expect(server.state.requests).toBe(2);
    expect(server.state.held).toHaveLength(1); // the one fetch, still unanswered
    server.state.held.shift()!();
  });

  it("asks a URL that failed no sooner than its backoff, answering UNAVAILABLE at once meanwhile", async () => {
    server.state.status = 503;
    const { verifier, errors } = uncached();
    for (const sub of ["a", "b", "c"])
      await refusal(verifier.verify(await token(rsa, sub)), "UNAVAILABLE");
    expect(server.state.requests).toBe(1);
    expect(errors).toHaveLength(1);
    server.state.status = 200;
    await sleep(1_050);
    expect((await verifier.verify(await token(rsa, "d"))).principal).toBe("d");
    expect(server.state.requests).toBe(2);
  });

  it("answers UNAVAILABLE, not UNAUTHENTICATED, for an unknown kid while the URL fails", async () => {
    const { verifier } = uncached({ jwksUrlCooldownMs: 50 });
    await verifier.verify(await token(rsa));
    server.state.status = 500;
    await sleep(60);
    const rotated = await signingKey("RS256", "rsa-2");
    await refusal(verifier.verify(await token(rotated)), "UNAVAILABLE");
    // within the cooldown the URL is not asked again, and the kid is still no proof
    // of a bad token while it fails
    await refusal(verifier.verify(await token(rotated)), "UNAVAILABLE");
    expect(server.state.requests).toBe(2);
  });

  it("counts the backoff from a fetch's failure: after one that hung until its timeout, calls are answered at once", async () => {
    server.state.hold = true;
    const { verifier } = uncached({ jwksUrlTimeoutMs: 1_200 }); // longer than the first backoff
    await refusal(verifier.verify(await token(rsa, "a")), "UNAVAILABLE");
    await refusal(verifier.verify(await token(rsa, "b")), "UNAVAILABLE");
    expect(server.state.requests).toBe(1);
    for (const answer of server.state.held.splice(0)) answer();
  });

  it("refuses plain http to a non-loopback host unless allowed", () => {
    expect(() => new JwtVerifier({ jwksUrl: "http://id.example/jwks.json" })).toThrow(
      AuthConfigError,
    );
    expect(() => new JwtVerifier({ jwksUrl: "http://id.example/jwks.json" })).toThrow(/https/);
    expect(() => new JwtVerifier({ jwksUrl: "ftp://id.example/jwks.json" })).toThrow(/https/);
    expect(() => new JwtVerifier({ jwksUrl: "not a url" })).toThrow(/not a URL/);
    expect(
      new JwtVerifier({ jwksUrl: "http://id.example/jwks.json", jwksUrlAllowHttp: true })
        .algorithms,
    ).toEqual(["RS256", "ES256"]);
  });
});
