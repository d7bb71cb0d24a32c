import { z } from "zod";
import {
  boolSetting,
  DEFAULT_MAX_MESSAGE_BYTES,
  intSetting,
  loadConfig,
  readSecret,
  type IdentityOptions,
} from "@codeq/server-kit";
import { SHARD_ID_PATTERN } from "@codeq/common";
import { MAX_BATCH, MAX_CLEANUP_BATCH, MOVE_BATCH_BYTES } from "@codeq/engine";
import { requestLimitProblem, TASK_FIELDS_MAX_BYTES } from "@codeq/wire";

/** Environment variables: CODEQ_SHARD_<SETTING>, e.g. CODEQ_SHARD_REDIS_URL. File: CODEQ_SHARD_CONFIG_FILE. */
export const SHARD_ENV_PREFIX = "CODEQ_SHARD_";

const ms = intSetting;
const bool = boolSetting;

const shardSettings = z.strictObject({
  /** This shard's id in the shard map (^[a-z0-9][a-z0-9-]{0,62}$). */
  id: z
    .string()
    .regex(SHARD_ID_PATTERN, "lower-case letters, digits and '-', at most 63")
    .default("local"),
  /** gRPC listen address; port 0 picks a free port. */
  listen: z.string().default("127.0.0.1:7400"),
  /** Prometheus metrics (HTTP GET /metrics); empty disables. Port 0 picks a free port. */
  metricsListen: z.string().default("127.0.0.1:9400"),
  /** The shard's own store (KVRocks in production, redis-server in development). */
  redisUrl: z.string().url().default("redis://127.0.0.1:6379"),
  /** First segment of every storage key (a unique one per test keeps tests apart). */
  keyPrefix: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/)
    .default("codeq"),
  /** "legacy" drops the shard segment from keys (single-shard deployments only). */
  keyLayout: z.enum(["sharded", "legacy"]).default("sharded"),
  /**
   * Development identity: trust `x-codeq-tenant` (and `x-codeq-roles`) metadata
   * from any caller. Never in production; the worker logs a warning when it is on.
   */
  devIdentity: bool(false),
  /**
   * The secret routers present (x-codeq-router-secret), at least 32 characters:
   * with it, the identity a router states is trusted and direct callers without it
   * are refused. Prefer `routerSecretFile`; use mutual TLS where you can.
   */
  routerSecret: z.string().default(""),
  /** A file holding the router secret (wins over `routerSecret`). */
  routerSecretFile: z.string().default(""),
  /**
   * The secret routers presented before `routerSecret`, still accepted while they are
   * rolled onto the new one (a rotation); empty once they all present the new one.
   */
  routerSecretPrevious: z.string().default(""),
  /** A file holding the previous router secret (wins over `routerSecretPrevious`). */
  routerSecretPreviousFile: z.string().default(""),
  /**
   * CA of the store's TLS certificate, for a `rediss://` store URL (KVRocks with
   * TLS). The store password goes in the URL: rediss://:password@host:port.
   */
  redisTlsCaFile: z.string().default(""),
  /** TLS certificate (PEM) the shard worker serves with; plaintext when unset. */
  tlsCertFile: z.string().default(""),
  /** The private key of `tlsCertFile`; also the client key of the mover towards other shards. */
  tlsKeyFile: z.string().default(""),
  /**
   * The CA that signed routers' and shard workers' certificates. With it, callers
   * must present a certificate it signed (mutual TLS), and the identity they state is
   * trusted: only routers and shard workers hold such certificates. The mover uses
   * it to verify other shards.
   */
  tlsCaFile: z.string().default(""),
  /** Largest task payload in bytes (a request of `maxMessageBytes` must hold one). */
  payloadCapBytes: intSetting(1, 64 * 1024 * 1024, 1024 * 1024),
  /**
   * Largest request message in bytes; a bigger one is refused (RESOURCE_EXHAUSTED)
   * before it is read. It must hold a task at the payload cap, or an ack's result of 1
   * MiB, with the rest of its request at its largest (`requestLimitProblem`): a smaller
   * one stops the worker at start. Every shard worker of a map should have the same: the
   * mover sizes its requests to the target by this shard's own (`moveBatchBytes`).
   */
  maxMessageBytes: intSetting(1024, 256 * 1024 * 1024, DEFAULT_MAX_MESSAGE_BYTES),
  /**
   * Most bytes of tasks one answer carries (a Lease response, one push of a
   * LeaseStream): what a lease took beyond it goes back to the queue at once,
   * uncounted. The default fits gRPC's usual 4 MiB receive limit of clients in every
   * language. A single task larger than this is still delivered, alone.
   */
  maxResponseBytes: intSetting(64 * 1024, 256 * 1024 * 1024, 4 * 1024 * 1024 - 64 * 1024),
  /** How long an idempotency key deduplicates, ms (default 24 h). */
  idempotencyWindowMs: ms(1, 30 * 24 * 3600_000, 24 * 3600_000),
  /** How long completed tasks are kept, ms (0 deletes at ack; default 10 min). */
  completedRetentionMs: ms(0, 30 * 24 * 3600_000, 600_000),
  /** How long dead tasks are kept, ms (default 7 days). */
  deadRetentionMs: ms(0, 365 * 24 * 3600_000, 7 * 24 * 3600_000),
  /** Lease duration when a worker does not set one, ms. */
  defaultLeaseMs: ms(1000, 43_200_000, 30_000),
  /** Longest wait of a unary Lease, ms. */
  maxLeaseWaitMs: ms(0, 30_000, 30_000),
  /** Most credits a stream may hold outstanding. */
  maxStreamCredits: intSetting(1, 1_000_000, 10_000),
  /** Largest batch in one request (enqueue, ack, nack, extend, lease). */
  // one request is one engine call, which takes at most MAX_BATCH items
  maxBatch: intSetting(1, MAX_BATCH, MAX_BATCH),
  /** Longest the due loop sleeps when nothing is due, ms (it is woken early by new work). */
  dueIdleMs: ms(10, 60_000, 1_000),
  /** Tasks or leases the due loop handles per queue per pass (the engine's most per call). */
  dueBatch: intSetting(1, MAX_BATCH, 1000),
  /** How often a retention cleanup pass runs, ms. */
  cleanupIntervalMs: ms(100, 3_600_000, 5_000),
  /**
   * Queues one retention pass sweeps, about (the registry is walked from where the last
   * pass stopped): a pass stays bounded however many queues the shard holds.
   */
  cleanupQueues: intSetting(1, 1_000_000, 1000),
  /**
   * Records of each kind retention deletes per queue in one store call (the engine's most
   * per call); a queue that fills it is swept again in the same pass, up to CLEANUP_ROUNDS times.
   */
  cleanupBatch: intSetting(1, MAX_CLEANUP_BATCH, 5000),
  /**
   * Idle streams are re-woken this often as a safety net, ms. Wake-ups come from
   * this process's own writes (it is the only writer of its store); this only
   * matters if something else wrote to the store.
   */
  rewakeMs: ms(100, 3_600_000, 5_000),
  /** How long a graceful shutdown waits for in-flight calls before forcing, in ms. */
  graceMs: ms(0, 600_000, 10_000),
  /**
   * How often the server pings each client connection, ms; a client that does not
   * answer within the same time (10 s at most) is cut off and its streams end.
   */
  keepaliveMs: ms(100, 3_600_000, 30_000),
  /** How often the store is pinged for the health status, in ms. */
  storeCheckMs: ms(100, 60_000, 2_000),
  /**
   * A store connection that receives nothing for this long while a command waits is
   * taken as dead and replaced (its commands fail as the store's failures): a store
   * whose host vanished without closing it would otherwise hold it, and the worker
   * NOT_SERVING, until TCP gives up, about 15 minutes.
   */
  storeSocketTimeoutMs: ms(1_000, 600_000, 30_000),
  /**
   * How long a metrics scrape waits for the queue depth read, ms: past it the scrape
   * answers without `codeq_queue_depth` (counting a failed read) rather than fail whole
   * past Prometheus's own timeout (10 s by default), `codeq_shard_available` with it.
   */
  depthScrapeTimeoutMs: ms(100, 600_000, 5_000),
  /**
   * How long start-up waits for the store to answer (it may start after the worker, as
   * under Compose or Kubernetes) before the worker gives up, naming the store.
   */
  storeStartTimeoutMs: ms(1_000, 600_000, 30_000),
  /**
   * The control store holding the shard map (redis://host:port). Empty: a standalone
   * shard with no map, which owns every queue and fences nothing.
   */
  controlUrl: z.union([z.literal(""), z.string().url()]).default(""),
  /** CA of the control store's TLS certificate, for a `rediss://` control URL. */
  controlTlsCaFile: z.string().default(""),
  /** Key prefix of the shard map in the control store (the map is `<prefix>:ctl:shardmap`). */
  controlPrefix: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/)
    .default("codeq"),
  /** Run the migration mover (off: migrations draining this shard wait; for tests and emergencies). */
  mover: bool(true),
  /** The largest batch the migration mover exports and imports (a pass starts at 50 and doubles). */
  moverBatch: intSetting(1, 1000, 500),
  /** Pause between mover passes while a migration drains this shard, ms. */
  moverIntervalMs: ms(10, 60_000, 250),
  /**
   * The share of time the mover works, percent: after each batch it rests in
   * proportion to the batch's time, leaving the rest to live traffic (100: no rest).
   */
  moverDutyPercent: intSetting(1, 100, 50),
  /**
   * The mover yields while the receiving shard worker (or this one) is busier than this,
   * percent of event-loop utilisation: before each batch it waits, up to a second, until
   * the load falls below (100: never yields; see docs/migration.md).
   */
  moverYieldAbovePercent: intSetting(1, 100, 70),
  /**
   * How long after this shard stops being the default, with the change not finished
   * (SetDefaultShard answered `finished: false`), its worker finishes it itself, ms.
   */
  defaultFinishAfterMs: ms(100, 3_600_000, 10_000),
  /** How often the shard map is re-read as a fallback to its announcements, ms. */
  mapPollMs: ms(100, 3_600_000, 2_000),
});

export const shardConfigSchema = shardSettings.superRefine((config, ctx) => {
  const problem = requestLimitProblem(config.payloadCapBytes, config.maxMessageBytes);
  if (problem) ctx.addIssue({ code: "custom", path: ["maxMessageBytes"], message: problem });
});

export type ShardConfig = Readonly<z.infer<typeof shardConfigSchema>>;

/** Reads, validates and freezes the shard worker's configuration. */
export function loadShardConfig(env: NodeJS.ProcessEnv = process.env): ShardConfig {
  return loadConfig(shardConfigSchema, SHARD_ENV_PREFIX, env);
}

/** The configuration with every default, overridden by `overrides` (tests, embedding). */
export function shardConfig(
  overrides: Partial<z.input<typeof shardConfigSchema>> = {},
): ShardConfig {
  return Object.freeze(shardConfigSchema.parse(overrides));
}

/**
 * Settings that are valid but work against each other, as warnings to log at start:
 * a payload cap past the answer bound means tasks delivered one per answer, each larger
 * than gRPC clients accept by default.
 */
export function configWarnings(config: ShardConfig): string[] {
  const out: string[] = [];
  if (config.payloadCapBytes > config.maxResponseBytes)
    out.push(
      `payloadCapBytes (${config.payloadCapBytes}) is above maxResponseBytes (${config.maxResponseBytes}): a task that large is delivered alone, in an answer larger than gRPC clients accept by default (4 MiB); its workers must raise their receive limit`,
    );
  return out;
}

/**
 * The most bytes of tasks, as stored, one ImportTasks request of the mover carries
 * (exportBatch's bound; a first task larger than it goes alone, and fits, as
 * `requestLimitProblem` holds): MOVE_BATCH_BYTES, or half of what `maxMessageBytes`
 * leaves beside TASK_FIELDS_MAX_BYTES when that is less. The other half is for what the
 * stored bytes do not count: each task's id, command, tenant and framing, about 350
 * bytes for each of up to 1000 tasks.
 */
export function moveBatchBytes(config: ShardConfig): number {
  const room = config.maxMessageBytes - TASK_FIELDS_MAX_BYTES;
  return Math.max(1, Math.min(MOVE_BATCH_BYTES, Math.floor(room / 2)));
}

/** How this shard worker accepts identity: from routers (by secret), and/or development mode. */
export function identityOptions(config: ShardConfig): IdentityOptions {
  const routerSecret = readSecret(
    "the router secret",
    config.routerSecret,
    config.routerSecretFile || undefined,
  );
  const previousRouterSecret = readSecret(
    "the previous router secret",
    config.routerSecretPrevious,
    config.routerSecretPreviousFile || undefined,
  );
  if (previousRouterSecret && !routerSecret)
    throw new Error(
      "a previous router secret (CODEQ_SHARD_ROUTER_SECRET_PREVIOUS…) is accepted only beside the current one: set CODEQ_SHARD_ROUTER_SECRET_FILE too",
    );
  return {
    devIdentity: config.devIdentity,
    ...(routerSecret ? { routerSecret } : {}),
    ...(previousRouterSecret ? { previousRouterSecret } : {}),
    // mutual TLS proves a caller is a router (or a shard worker) before any call
    ...(config.tlsCaFile ? { trustedTransport: true } : {}),
  };
}
