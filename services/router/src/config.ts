import * as fs from "node:fs";
import { z } from "zod";
import type { AuthConfig } from "@codeq/auth";
import { NAME_PATTERN } from "@codeq/shardmap";
import { boolSetting, DEFAULT_MAX_MESSAGE_BYTES, intSetting, loadConfig } from "@codeq/server-kit";
import { requestLimitProblem } from "@codeq/wire";

/** Environment variables: CODEQ_ROUTER_<SETTING>. File: CODEQ_ROUTER_CONFIG_FILE. */
export const ROUTER_ENV_PREFIX = "CODEQ_ROUTER_";

/** The tenants of a comma-separated list (`adminTenants`), blanks dropped. */
export const tenantList = (value: string): string[] =>
  value
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t !== "");

const int = intSetting;
const bool = boolSetting;

const routerSettings = z.strictObject({
  /** gRPC listen address for clients; port 0 picks a free port. */
  listen: z.string().default("127.0.0.1:7300"),
  /** Prometheus /metrics address; empty disables it. */
  metricsListen: z.string().default("127.0.0.1:9300"),
  /** The control store holding the shard map (key <controlPrefix>:ctl:shardmap). */
  controlUrl: z.string().url().default("redis://127.0.0.1:6379"),
  /** CA of the control store's TLS certificate, for a `rediss://` control URL. */
  controlTlsCaFile: z.string().default(""),
  /**
   * A static shard map (YAML) to serve instead of the control store's: no control
   * store, no map changes (AdminService writes are refused) and no migrations. Its
   * shard workers run standalone (no control URL). A bad file stops the router with
   * every problem and the path. Empty: the control store.
   */
  shardMapFile: z.string().default(""),
  /**
   * A shard map (YAML, as `shardMapFile`) the router writes to the control store at
   * start when the store holds none yet (a compare-and-set from nothing: of routers
   * starting together, one writes it and the rest read it). Once a map is there the
   * file is ignored: change the map through AdminService. Empty: none (the map must
   * come from elsewhere; start-up waits `mapStartTimeoutMs` for one).
   */
  bootstrapMapFile: z.string().default(""),
  /** Key prefix of the shard map in the control store. */
  controlPrefix: z.string().min(1).default("codeq"),
  /** Fallback poll of the shard map, ms (changes normally arrive by announcement). */
  mapPollMs: int(100, 600_000, 2_000),
  /** How long start-up waits for a shard map to exist in the control store, ms. */
  mapStartTimeoutMs: int(0, 600_000, 30_000),
  /**
   * Development identity: trust `x-codeq-tenant` (and `x-codeq-roles`) metadata
   * from any caller. Never in production; the router logs a warning when it is on.
   */
  devIdentity: bool(false),
  /** Static tokens file (YAML or JSON: tokens with tenant, roles; see packages/auth). */
  authTokensFile: z.string().default(""),
  /** File holding the HS256 secret JWTs are signed with (≥ 32 bytes). */
  jwtHs256SecretFile: z.string().default(""),
  /** JWKS file with the RS256/ES256 keys JWTs are signed with (re-read when it changes). */
  jwtJwksFile: z.string().default(""),
  /** JWKS URL (https) with the RS256/ES256 keys (cached, refreshed). */
  jwtJwksUrl: z.string().default(""),
  /** Required `iss` of JWTs, when set. */
  jwtIssuer: z.string().default(""),
  /** Required `aud` of JWTs, when set. */
  jwtAudience: z.string().default(""),
  /** Clock skew tolerated on exp/nbf/iat, seconds. */
  jwtClockToleranceSec: int(0, 600, 30),
  /**
   * Tenants whose admins may use AdminService (assign commands, abort migrations, add
   * and remove shards), comma-separated, e.g. `ops`. Empty: the admins of every
   * tenant, who then can move every tenant's queues; set it wherever tenants get the
   * admin role for their own dead-letter queues (ListDead, RedriveDead, PurgeDead).
   */
  adminTenants: z
    .string()
    .default("")
    .refine(
      (v) => {
        const tenants = tenantList(v);
        // a value of blanks and commas would open AdminService to every tenant's admins
        return (
          (tenants.length > 0 || v.trim() === "") && tenants.every((t) => NAME_PATTERN.test(t))
        );
      },
      { error: `adminTenants must be tenant names (${NAME_PATTERN.source}) separated by commas` },
    ),
  /** Claim naming the tenant. */
  jwtTenantClaim: z.string().default("tenant"),
  /** Claim listing the roles (else `scope` is read: codeq:produce, codeq:work, codeq:admin, codeq:work:all-tenants). */
  jwtRolesClaim: z.string().default("roles"),
  /** Claim listing the commands a cross-tenant worker may serve. */
  jwtCommandsClaim: z.string().default("commands"),
  /**
   * The secret the router presents to shard workers (x-codeq-router-secret), at
   * least 32 characters; the same on every router and shard worker of a cluster.
   * Prefer `shardSecretFile`; use mutual TLS where you can.
   */
  shardSecret: z.string().default(""),
  /** A file holding the shard secret (wins over `shardSecret`). */
  shardSecretFile: z.string().default(""),
  /** TLS certificate (PEM) the router serves clients with; plaintext when unset. */
  tlsCertFile: z.string().default(""),
  /** The private key of `tlsCertFile`. */
  tlsKeyFile: z.string().default(""),
  /** With it, clients must present a certificate this CA signed (mutual TLS). */
  tlsClientCaFile: z.string().default(""),
  /** CA that signed the shard workers' certificates: TLS towards shards when set. */
  shardTlsCaFile: z.string().default(""),
  /** The router's client certificate towards shard workers (mutual TLS). */
  shardTlsCertFile: z.string().default(""),
  /** The private key of `shardTlsCertFile`. */
  shardTlsKeyFile: z.string().default(""),
  /** gRPC channels (HTTP/2 connections) the router keeps to each shard worker. */
  channelsPerShard: int(1, 16, 2),
  /**
   * Calls a Forward stream to a shard worker holds unanswered, at most; past it a call
   * is refused at once with UNAVAILABLE (the worker is not keeping up).
   */
  forwardMaxPending: int(1, 1_000_000, 4096),
  /** Deadline of a forwarded call when the client set a longer one or none, ms. */
  shardTimeoutMs: int(100, 600_000, 10_000),
  /** Per-shard timeout of fan-out reads (QueueStats, GetTask, ListShards); in a unary Lease over several shards, how long the others have once one answered, ms. */
  fanoutTimeoutMs: int(50, 60_000, 2_000),
  /** Circuit breaker: failure percentage over the window that opens it. */
  breakerErrorPercent: int(1, 100, 50),
  /** Circuit breaker: calls in the window before it may open. */
  breakerVolume: int(1, 10_000, 5),
  /** Circuit breaker: how long it stays open before letting a trial call through, ms. */
  breakerResetMs: int(100, 600_000, 2_000),
  /** Circuit breaker: the rolling window failures are counted over, ms. */
  breakerWindowMs: int(1_000, 600_000, 10_000),
  /**
   * Largest task payload accepted, bytes (checked before a batch is split; shards check
   * again). A request of `maxMessageBytes` must hold one.
   */
  payloadCapBytes: int(1, 64 * 1024 * 1024, 1024 * 1024),
  /** Most credits a client's LeaseStream may hold outstanding. */
  maxStreamCredits: int(1, 1_000_000, 10_000),
  /** Tasks one tenant may enqueue per second through one router (0: no limit). */
  tenantEnqueueRate: int(0, 10_000_000, 100_000),
  /** Tasks one tenant may lease per second through one router (0: no limit). */
  tenantLeaseRate: int(0, 10_000_000, 100_000),
  /** Rate-limit bursts: a bucket holds this many seconds of its rate. */
  rateBurstSeconds: int(1, 60, 2),
  /** Open LeaseStreams one caller (principal) may hold on one router. */
  maxStreamsPerPrincipal: int(1, 100_000, 100),
  /**
   * When the credential a LeaseStream was opened with expires, the stream gets no more
   * tasks and may settle those it holds for this long, ms; then (or once it holds
   * none) it ends with UNAUTHENTICATED, and what it still holds is released as failed
   * attempts. An EnqueueStream stops reading at once.
   */
  streamCredentialGraceMs: int(0, 600_000, 30_000),
  /**
   * How often a stream's credential is checked again (0: never): a static token taken
   * out of the tokens file, or a JWT whose key left the key set, then stops the stream
   * as its expiry would.
   */
  streamCredentialRecheckMs: int(0, 3_600_000, 60_000),
  /** How often the static tokens file is looked at for changes, at most (as calls come). */
  authTokensCheckIntervalMs: int(0, 3_600_000, 10_000),
  /**
   * Largest request message, bytes (bigger ones are refused before parsing). It must hold
   * a task at the payload cap, or an ack's result of 1 MiB, with the rest of its request
   * at its largest, or the router does not start; and be no larger than the shard
   * workers' own, or they refuse what the router took.
   */
  maxMessageBytes: int(1024, 256 * 1024 * 1024, DEFAULT_MAX_MESSAGE_BYTES),
  /**
   * Most bytes of one Lease answer, or ListDead page, filled from several shards (each
   * shard bounds its own, as its `maxResponseBytes`); Lease tasks past it are given back
   * to their shard. The default fits gRPC's usual 4 MiB receive limit of clients.
   */
  maxResponseBytes: int(64 * 1024, 256 * 1024 * 1024, 4 * 1024 * 1024 - 64 * 1024),
  /** How long a graceful shutdown waits for in-flight calls before forcing, in ms. */
  graceMs: int(0, 600_000, 10_000),
  /**
   * How often the server pings each client connection, ms; a client that does not
   * answer within the same time (10 s at most) is cut off and its streams end.
   */
  keepaliveMs: int(100, 3_600_000, 30_000),
});

export const routerConfigSchema = routerSettings.superRefine((config, ctx) => {
  const problem = requestLimitProblem(config.payloadCapBytes, config.maxMessageBytes);
  if (problem) ctx.addIssue({ code: "custom", path: ["maxMessageBytes"], message: problem });
});

export type RouterConfig = Readonly<z.infer<typeof routerConfigSchema>>;

/** Reads, validates and freezes the router's configuration. */
export function loadRouterConfig(env: NodeJS.ProcessEnv = process.env): RouterConfig {
  return loadConfig(routerConfigSchema, ROUTER_ENV_PREFIX, env);
}

/** A full configuration from defaults and `overrides` (tests, embedding). */
export function routerConfig(overrides: Partial<RouterConfig> = {}): RouterConfig {
  return Object.freeze(routerConfigSchema.parse(overrides));
}

/** The authentication the configuration asks for, or undefined when it asks for none. */
export function authConfigOf(config: RouterConfig): AuthConfig | undefined {
  const jwt = {
    ...(config.jwtHs256SecretFile
      ? { hs256Secret: fs.readFileSync(config.jwtHs256SecretFile, "utf8").trimEnd() }
      : {}),
    ...(config.jwtJwksFile ? { jwksFile: config.jwtJwksFile } : {}),
    ...(config.jwtJwksUrl ? { jwksUrl: config.jwtJwksUrl } : {}),
  };
  const hasJwt = Object.keys(jwt).length > 0;
  if (!config.authTokensFile && !hasJwt) return undefined;
  return {
    ...(config.authTokensFile
      ? {
          tokensFile: config.authTokensFile,
          tokensFileCheckIntervalMs: config.authTokensCheckIntervalMs,
        }
      : {}),
    ...(hasJwt
      ? {
          jwt: {
            ...jwt,
            ...(config.jwtIssuer ? { issuer: config.jwtIssuer } : {}),
            ...(config.jwtAudience ? { audience: config.jwtAudience } : {}),
            clockToleranceSec: config.jwtClockToleranceSec,
            tenantClaim: config.jwtTenantClaim,
            rolesClaim: config.jwtRolesClaim,
            commandsClaim: config.jwtCommandsClaim,
          },
        }
      : {}),
  };
}
