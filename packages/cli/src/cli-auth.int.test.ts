import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ChannelCredentials } from "nice-grpc";
import { startLocalCluster, type LocalCluster } from "@codeq/local-cluster";
import { testCert } from "@codeq/testing";
import { requireBuilt, runCodeq } from "./test/run-codeq";

/**
 * `codeq` against a router as deploy/ runs one: no development identity, callers
 * authenticated by bearer tokens, mutual TLS. The CLI sends its token and
 * certificate; without them it is refused, and says what to give.
 */

const OPS_TOKEN = "ops-admin-token-0123456789";
const ACME_TOKEN = "acme-producer-token-0123456789";

let cluster: LocalCluster;
let dir: string;
let router: string;

const codeq = (args: string[], env: Record<string, string> = {}) => runCodeq(router, args, env);

/** The TLS options of a client with the test CA's client certificate. */
const MUTUAL_TLS = [
  "--tls-ca",
  testCert("ca.crt"),
  "--tls-cert",
  testCert("client.crt"),
  "--tls-key",
  testCert("client.key"),
];

beforeAll(async () => {
  requireBuilt();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "codeq-cli-auth-"));
  const tokens = path.join(dir, "tokens.yaml");
  fs.writeFileSync(
    tokens,
    [
      "tokens:",
      `  - token: ${OPS_TOKEN}`,
      "    tenant: ops",
      "    roles: [admin, producer]",
      `  - token: ${ACME_TOKEN}`,
      "    tenant: acme",
      "    roles: [producer]",
      "",
    ].join("\n"),
  );
  fs.writeFileSync(path.join(dir, "ops.token"), `${OPS_TOKEN}\n`);
  cluster = await startLocalCluster({
    shards: 1,
    routers: 1,
    env: {
      CODEQ_ROUTER_DEV_IDENTITY: "false",
      CODEQ_ROUTER_AUTH_TOKENS_FILE: tokens,
      CODEQ_ROUTER_TLS_CERT_FILE: testCert("server.crt"),
      CODEQ_ROUTER_TLS_KEY_FILE: testCert("server.key"),
      CODEQ_ROUTER_TLS_CLIENT_CA_FILE: testCert("ca.crt"),
    },
    routerCredentials: ChannelCredentials.createSsl(
      fs.readFileSync(testCert("ca.crt")),
      fs.readFileSync(testCert("client.key")),
      fs.readFileSync(testCert("client.crt")),
    ),
  });
  // the test certificate is for localhost
  router = `localhost:${cluster.routers[0]!.address.split(":")[1]}`;
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe("codeq with a token and mutual TLS", () => {
  test("a token from a file and the client certificate: admin and queue calls go through", async () => {
    const auth = [...MUTUAL_TLS, "--token-file", path.join(dir, "ops.token")];
    const shards = await codeq(["shards", ...auth]);
    expect(shards).toMatchObject({ code: 0, stderr: "" });
    expect(shards.stdout).toMatch(/^a\s+\S+\s+ACTIVE\s+yes\s+CLOSED/m);
    const enqueued = await codeq(["enqueue", "cli.auth", "--count", "2", "--json", ...auth]);
    expect(enqueued).toMatchObject({ code: 0, stderr: "" });
    // the token's tenant is the caller: acme's token sees none of ops' tasks
    const ops = await codeq(["stats", "cli.auth", "--json", ...auth]);
    expect(JSON.parse(ops.stdout)[0].total.ready).toBe(2);
    const acme = await codeq(["stats", "cli.auth", "--json", ...MUTUAL_TLS], {
      CODEQ_TOKEN: ACME_TOKEN,
    });
    expect(JSON.parse(acme.stdout)[0].total.ready).toBe(0);
  }, 120_000);

  test("without a token the router refuses, and the CLI says where a token goes", async () => {
    const none = await codeq(["stats", "cli.auth", ...MUTUAL_TLS]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/^UNAUTHENTICATED: /);
    expect(none.stderr).toContain("CODEQ_TOKEN, or --token-file FILE");
    const wrong = await codeq(["stats", "cli.auth", ...MUTUAL_TLS], {
      CODEQ_TOKEN: "not-a-token-of-this-router",
    });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain("did not accept the token given");
    // a role the token does not carry is refused, not stated around
    const dlq = await codeq(["dlq", "list", "cli.auth", ...MUTUAL_TLS], {
      CODEQ_TOKEN: ACME_TOKEN,
    });
    expect(dlq.code).toBe(2);
    expect(dlq.stderr).toMatch(/^PERMISSION_DENIED: /);
    // listing every command reads the map (AdminService): a producer is told to name them
    const all = await codeq(["stats", ...MUTUAL_TLS], { CODEQ_TOKEN: ACME_TOKEN });
    expect(all.code).toBe(2); // the server refused
    expect(all.stderr).toMatch(/^PERMISSION_DENIED: .*name the commands: codeq stats COMMAND/);
  }, 120_000);

  test("stated identity next to a token, or no TLS to a TLS router, is refused with a hint", async () => {
    const stated = await codeq(["stats", "cli.auth", "--tenant", "acme", ...MUTUAL_TLS], {
      CODEQ_TOKEN: OPS_TOKEN,
    });
    expect(stated.code).toBe(1);
    expect(stated.stderr).toContain("with a token, its tenant and roles are used");
    const plain = await codeq(["stats", "cli.auth", "--timeout", "3000"], {
      CODEQ_TOKEN: OPS_TOKEN,
    });
    expect(plain.code).toBe(3);
    expect(plain.stderr).toContain("--tls or --tls-ca if it serves TLS");
  }, 120_000);
});
