import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { SignJWT } from "jose";
import { ChannelCredentials } from "nice-grpc";
import { freePort, testCert } from "@codeq/testing";
import {
  ratio,
  type FigureResult,
  type RatioResult,
  type Scenario,
  type ScenarioContext,
  type ScenarioResult,
  type VariantResult,
} from "../scenario";
import { cpuPerThousand, disturbed, openRig, TENANT, type Rig } from "./grpc-rig";
import { streamCycles, unaryCycles, type Workload } from "./grpc-workloads";
import { startService, type BenchService } from "./service";
import { deleteUnder, writeShardMap } from "./shard-map";

/**
 * What authentication and TLS cost (issue 7's benchmark): the router scenario's
 * batched workloads through a router in front of one shard worker, four ways in one
 * run, each with processes of its own started for it:
 *
 * - plain: the router trusts the tenant clients state (development identity) and
 *   proves itself to the worker with the shared secret, all in plaintext.
 * - JWT: clients send `authorization: Bearer <HS256 JWT>`, development identity off.
 * - TLS: clients → router with mutual TLS (client certificates of the test CA), and
 *   router → worker with mutual TLS, which is then also what proves the router to
 *   the worker (no secret).
 * - JWT + TLS: both.
 *
 * Ratios are each way's rate ÷ plain's, for information (the issue sets no target).
 */

const CONTROL_PREFIX = "bench-security";
const SHARD_PREFIX = `${CONTROL_PREFIX}-shard`;

interface Setup {
  readonly name: string;
  readonly jwt: boolean;
  readonly tls: boolean;
}

const SETUPS: readonly Setup[] = [
  { name: "plain", jwt: false, tls: false },
  { name: "JWT", jwt: true, tls: false },
  { name: "TLS", jwt: false, tls: true },
  { name: "JWT + TLS", jwt: true, tls: true },
];

const WORKLOADS = [
  { name: "unary batch cycles", command: "BENCH_UNARY", body: unaryCycles },
  { name: "stream cycles", command: "BENCH_STREAM", body: streamCycles },
] as const;

/** The test CA's certificates (packages/testing/certs): server for both services, client for callers. */
const TLS_FILES = {
  ca: testCert("ca.crt"),
  serverCert: testCert("server.crt"),
  serverKey: testCert("server.key"),
  clientCert: testCert("client.crt"),
  clientKey: testCert("client.key"),
};

/**
 * The services listen on 127.0.0.1, and the test certificates name it, but Node warns
 * against an IP address as the TLS server name (RFC 6066): check the name they also
 * carry instead.
 */
const TLS_CHANNEL_OPTIONS = { "grpc.ssl_target_name_override": "localhost" };

/** A JWT the router accepts: tenant TENANT, producer and worker, valid for an hour. */
function signJwt(secret: string): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ tenant: TENANT, roles: ["producer", "worker"] })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject("bench")
    .setIssuedAt(now)
    .setExpirationTime(now + 3600)
    .sign(new TextEncoder().encode(secret));
}

/** The services' environment for `setup`; `secretFile` holds the JWT secret. */
function environments(
  setup: Setup,
  addresses: { shard: string; router: string },
  ctx: ScenarioContext,
  routerSecret: string,
  secretFile: string,
): { shard: Record<string, string>; router: Record<string, string> } {
  const shard: Record<string, string> = {
    CODEQ_LOG_LEVEL: "warn",
    CODEQ_SHARD_ID: "a",
    CODEQ_SHARD_LISTEN: addresses.shard,
    CODEQ_SHARD_METRICS_LISTEN: "",
    CODEQ_SHARD_REDIS_URL: ctx.server.url,
    CODEQ_SHARD_KEY_PREFIX: SHARD_PREFIX,
    CODEQ_SHARD_DEV_IDENTITY: "false",
    CODEQ_SHARD_GRACE_MS: "1000",
    CODEQ_SHARD_CONTROL_URL: ctx.server.url,
    CODEQ_SHARD_CONTROL_PREFIX: CONTROL_PREFIX,
    NODE_OPTIONS: process.env.CODEQ_BENCH_SHARD_NODE_OPTIONS ?? "",
    ...(setup.tls
      ? {
          CODEQ_SHARD_TLS_CERT_FILE: TLS_FILES.serverCert,
          CODEQ_SHARD_TLS_KEY_FILE: TLS_FILES.serverKey,
          CODEQ_SHARD_TLS_CA_FILE: TLS_FILES.ca,
        }
      : { CODEQ_SHARD_ROUTER_SECRET: routerSecret }),
  };
  const router: Record<string, string> = {
    CODEQ_LOG_LEVEL: "warn",
    CODEQ_ROUTER_LISTEN: addresses.router,
    CODEQ_ROUTER_METRICS_LISTEN: "",
    CODEQ_ROUTER_CONTROL_URL: ctx.server.url,
    CODEQ_ROUTER_CONTROL_PREFIX: CONTROL_PREFIX,
    CODEQ_ROUTER_GRACE_MS: "1000",
    NODE_OPTIONS: process.env.CODEQ_BENCH_ROUTER_NODE_OPTIONS ?? "",
    CODEQ_ROUTER_DEV_IDENTITY: String(!setup.jwt),
    ...(setup.jwt ? { CODEQ_ROUTER_JWT_HS256_SECRET_FILE: secretFile } : {}),
    ...(setup.tls
      ? {
          CODEQ_ROUTER_TLS_CERT_FILE: TLS_FILES.serverCert,
          CODEQ_ROUTER_TLS_KEY_FILE: TLS_FILES.serverKey,
          CODEQ_ROUTER_TLS_CLIENT_CA_FILE: TLS_FILES.ca,
          CODEQ_ROUTER_SHARD_TLS_CA_FILE: TLS_FILES.ca,
          CODEQ_ROUTER_SHARD_TLS_CERT_FILE: TLS_FILES.clientCert,
          CODEQ_ROUTER_SHARD_TLS_KEY_FILE: TLS_FILES.clientKey,
        }
      : { CODEQ_ROUTER_SHARD_SECRET: routerSecret }),
  };
  return { shard, router };
}

/** Client credentials: the test CA, and a client certificate it signed (mutual TLS). */
function clientCredentials(): ChannelCredentials {
  const read = (file: string) => fs.readFileSync(file);
  return ChannelCredentials.createSsl(
    read(TLS_FILES.ca),
    read(TLS_FILES.clientKey),
    read(TLS_FILES.clientCert),
  );
}

/** Starts `setup`'s shard worker and router and runs every workload through the router. */
async function runSetup(
  ctx: ScenarioContext,
  setup: Setup,
  index: number,
  secrets: { router: string; jwt: string; jwtFile: string },
): Promise<VariantResult[]> {
  const addresses = {
    shard: `127.0.0.1:${await freePort()}`,
    router: `127.0.0.1:${await freePort()}`,
  };
  // a fresh map (and no tasks left by the previous setup) for every setup
  await writeShardMap(ctx, CONTROL_PREFIX, { a: addresses.shard });
  const env = environments(setup, addresses, ctx, secrets.router, secrets.jwtFile);
  const tls = setup.tls
    ? { credentials: clientCredentials(), channelOptions: TLS_CHANNEL_OPTIONS }
    : undefined;
  const started: BenchService[] = [];
  let rig: Rig | undefined;
  try {
    ctx.progress(`security: ${setup.name}: starting a shard worker and a router`);
    const shard = await startService("shard-a", "shard", addresses.shard, env.shard, tls);
    started.push(shard);
    const router = await startService("router", "router", addresses.router, env.router, tls);
    started.push(router);
    // with JWT the token is the whole identity: no stated tenant
    const jwt = setup.jwt ? await signJwt(secrets.jwt) : undefined;
    rig = openRig(ctx, {
      scenario: "security",
      address: addresses.router,
      processes: { shard: shard.pid, router: router.pid },
      ...tls,
      ...(jwt ? { metadata: { authorization: `Bearer ${jwt}` } } : {}),
    });
    const results: VariantResult[] = [];
    for (const w of WORKLOADS) {
      const workload: Workload = {
        name: `${w.name}, ${setup.name}`,
        command: `${w.command}_${index}`,
      };
      results.push(await w.body(rig, workload));
    }
    return results;
  } finally {
    rig?.close();
    for (const p of started.reverse()) await p.stop();
  }
}

async function run(ctx: ScenarioContext): Promise<ScenarioResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "codeq-bench-security-"));
  const secrets = {
    router: randomBytes(24).toString("base64url"), // 32 characters
    jwt: randomBytes(36).toString("base64url"), // 48 characters
    jwtFile: path.join(dir, "jwt-hs256.secret"),
  };
  fs.writeFileSync(secrets.jwtFile, secrets.jwt, { mode: 0o600 });
  try {
    const bySetup: VariantResult[][] = [];
    for (const [i, setup] of SETUPS.entries()) bySetup.push(await runSetup(ctx, setup, i, secrets));
    // side by side: each workload's four ways together
    const variants = WORKLOADS.flatMap((_, w) => bySetup.map((results) => results[w]!));
    const ratios: RatioResult[] = WORKLOADS.flatMap((w, wi) =>
      SETUPS.slice(1).map((setup, si) => {
        const [plain, other] = [bySetup[0]![wi]!, bySetup[si + 1]![wi]!];
        const r = ratio(
          variants,
          `${setup.name} vs plain, ${w.name} (info)`,
          other.name,
          plain.name,
        );
        const caveat = disturbed([plain, other]);
        return caveat === undefined ? r : { ...r, caveat };
      }),
    );
    const figures: FigureResult[] = variants.map((v) => ({
      name: `router CPU per 1000 RPCs, ${v.name}`,
      value: cpuPerThousand(v, "router"),
      unit: "ms",
      detail: `shard worker: ${cpuPerThousand(v, "shard").toFixed(0)} ms`,
    }));
    return { variants, ratios, figures };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    await deleteUnder(ctx, CONTROL_PREFIX);
  }
}

export const securityScenario: Scenario = {
  name: "security",
  summary:
    "the router's batched workloads plain, with JWT auth, with TLS (mutual, every hop) and with both",
  run,
};
