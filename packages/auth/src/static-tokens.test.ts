import * as fs from "node:fs";
import * as path from "node:path";
import { AuthConfigError } from "./errors";
import { loadStaticTokens, parseStaticTokens, tokenSha256 } from "./static-tokens";
import { refusal, tempDir } from "./test/jwt";

const PRODUCER_TOKEN = "producer-token-0123456789";
const HASHED_TOKEN = "hashed-worker-token-abcdef";

const GOOD = `
tokens:
  - token: ${PRODUCER_TOKEN}
    tenant: acme
    principal: ci-bot
    roles: [producer]
  - token_sha256: ${tokenSha256(HASHED_TOKEN).toUpperCase()}
    tenant: globex
    roles: [worker, cross-tenant-worker]
    commands: [resize-image, send-mail]
`;

function configError(fn: () => unknown): AuthConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AuthConfigError);
    return err as AuthConfigError;
  }
  throw new Error("expected an AuthConfigError");
}

describe("static tokens", () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => {
    tmp = tempDir();
  });
  afterEach(() => tmp.remove());

  it("authenticates a plaintext token and a sha256 one from a YAML file", async () => {
    const file = path.join(tmp.dir, "tokens.yaml");
    fs.writeFileSync(file, GOOD);
    const tokens = loadStaticTokens(file);
    expect(tokens.size).toBe(2);

    const producer = await tokens.authenticate(`Bearer ${PRODUCER_TOKEN}`);
    expect(producer).toEqual({ tenant: "acme", principal: "ci-bot", roles: new Set(["producer"]) });

    const worker = await tokens.authenticate(`Bearer ${HASHED_TOKEN}`);
    expect(worker.tenant).toBe("globex");
    expect([...worker.roles].sort()).toEqual(["cross-tenant-worker", "worker"]);
    expect(worker.commands).toEqual(["resize-image", "send-mail"]);
    // Without a principal, one is derived from the token's hash, never from the token.
    expect(worker.principal).toBe(`static:${tokenSha256(HASHED_TOKEN).slice(0, 12)}`);
  });

  it("reads the same format as JSON", async () => {
    const tokens = parseStaticTokens(
      JSON.stringify({ tokens: [{ token: PRODUCER_TOKEN, tenant: "acme", roles: ["admin"] }] }),
    );
    expect((await tokens.verify(PRODUCER_TOKEN)).roles).toEqual(new Set(["admin"]));
  });

  it("refuses an unknown token, a near miss and a hash sent as the token", async () => {
    const tokens = parseStaticTokens(GOOD);
    const unknown = "not-a-configured-token-xyz";
    const err = await refusal(tokens.authenticate(`Bearer ${unknown}`), "UNAUTHENTICATED", unknown);
    expect(err.message).toMatch(/not one of this service's static tokens/);
    await refusal(tokens.verify(`${PRODUCER_TOKEN}x`), "UNAUTHENTICATED");
    await refusal(tokens.verify(tokenSha256(HASHED_TOKEN)), "UNAUTHENTICATED");
    expect(tokens.lookup(PRODUCER_TOKEN.slice(0, -1))).toBeUndefined();
  });

  it("refuses missing or malformed authorization metadata", async () => {
    const tokens = parseStaticTokens(GOOD);
    await refusal(tokens.authenticate(undefined), "UNAUTHENTICATED");
    await refusal(tokens.authenticate(PRODUCER_TOKEN), "UNAUTHENTICATED", PRODUCER_TOKEN);
    await refusal(
      tokens.authenticate(`Basic ${PRODUCER_TOKEN}`),
      "UNAUTHENTICATED",
      PRODUCER_TOKEN,
    );
  });

  it("lists every problem of a bad file, naming the file and never a token", () => {
    const shortToken = "tiny";
    const file = path.join(tmp.dir, "bad.yaml");
    fs.writeFileSync(
      file,
      `
tokens:
  - token: ${shortToken}
    tenant: acme
    roles: [producer]
  - token: ${PRODUCER_TOKEN}
    token_sha256: ${tokenSha256(PRODUCER_TOKEN)}
    tenant: "bad/tenant"
    roles: [producer, superuser]
  - tenant: acme
    roles: []
    colour: blue
  - token_sha256: abc
    tenant: acme
    roles: [worker]
    commands: ["no spaces allowed"]
`,
    );
    const err = configError(() => loadStaticTokens(file));
    expect(err.message).toContain(`invalid static tokens file ${file}`);
    const expected = [
      /tokens\[0\]\.token: must be at least 16 characters/,
      /tokens\[1\]: needs exactly one of token and token_sha256/,
      /tokens\[1\]\.tenant: must match/,
      /tokens\[1\]\.roles\[1\]:/,
      /tokens\[2\]: Unrecognized key.*colour/,
      /tokens\[2\]\.roles: must list at least one role/,
      /tokens\[2\]: needs exactly one of token and token_sha256/,
      /tokens\[3\]\.token_sha256: must be 64 hex digits/,
      /tokens\[3\]\.commands\[0\]: must match/,
    ];
    for (const problem of expected) expect(err.problems.some((p) => problem.test(p))).toBe(true);
    expect(err.problems).toHaveLength(expected.length);
    expect(err.message).not.toContain(shortToken);
    expect(err.message).not.toContain(PRODUCER_TOKEN);
  });

  it("refuses the same token listed twice, also once plain and once hashed", () => {
    const err = configError(() =>
      parseStaticTokens(
        JSON.stringify({
          tokens: [
            { token: PRODUCER_TOKEN, tenant: "a", roles: ["producer"] },
            { token_sha256: tokenSha256(PRODUCER_TOKEN), tenant: "b", roles: ["worker"] },
          ],
        }),
        "tokens.json",
      ),
    );
    expect(err.problems).toEqual(["tokens[1]: the same token as tokens[0]"]);
  });

  it("refuses a missing file, invalid YAML and a file without tokens", () => {
    const missing = path.join(tmp.dir, "absent.yaml");
    expect(configError(() => loadStaticTokens(missing)).message).toContain(
      `cannot read static tokens file ${missing}`,
    );
    expect(configError(() => parseStaticTokens("tokens: [", "t.yaml")).message).toMatch(
      /invalid static tokens file t\.yaml:\n {2}- not valid YAML or JSON/,
    );
    expect(configError(() => parseStaticTokens("tokens: []")).problems).toEqual([
      "tokens: must list at least one token",
    ]);
    expect(configError(() => parseStaticTokens("")).problems[0]).toMatch(/^\(file\): /);
  });
});
