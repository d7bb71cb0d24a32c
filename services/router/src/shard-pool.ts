import CircuitBreaker from "opossum";
import {
  ClientError,
  createChannel,
  createClientFactory,
  Metadata,
  ServerError,
  Status,
  type Channel,
} from "nice-grpc";
import { deadlineMiddleware } from "nice-grpc-client-middleware-deadline";
import { HealthDefinition } from "nice-grpc-server-health";
import { HealthCheckResponse_ServingStatus as Serving } from "nice-grpc-server-health/lib/proto/grpc/health/v1/health";
import { messageOf } from "@codeq/common";
import { internal } from "@codeq/proto";
import { channelCredentials, IDENTITY_HEADERS, type Logger } from "@codeq/server-kit";
import type { ShardMap } from "@codeq/shardmap";
import type { RouterConfig } from "./config";
import { ForwardLane, forwardService, LaneRefused } from "./forward-lane";
import { shardQueueService } from "./passthrough";

const clientFactory = createClientFactory().use(deadlineMiddleware);
const newQueueClient = (c: Channel) => clientFactory.create(shardQueueService, c);
/** The internal service's clients present the routers' secret on every call. */
const secretMetadata = (secret: string | undefined) => {
  const metadata = new Metadata();
  if (secret !== undefined) metadata.set(IDENTITY_HEADERS.routerSecret, secret);
  return metadata;
};
const newShardClient = (c: Channel, secret: string | undefined) =>
  clientFactory.create(internal.ShardServiceDefinition, c, {
    "*": { metadata: secretMetadata(secret) },
  });
const newForwardClient = (c: Channel, secret: string | undefined) =>
  clientFactory.create(forwardService, c, { "*": { metadata: secretMetadata(secret) } });

/** How long a shard worker that lacked Forward is sent QueueService calls before it is asked again, ms. */
const RETRY_LANES_MS = 60_000;
/** Longest unary Lease wait, ms (the shard workers' maximum); it bounds a call in flight. */
export const MAX_LEASE_WAIT_MS = 30_000;
/** A retired connection closes this long after its calls' deadlines at the latest, ms. */
const RETIRE_MARGIN_MS = 5_000;
const newHealthClient = (c: Channel) => clientFactory.create(HealthDefinition, c);

export type QueueClient = ReturnType<typeof newQueueClient>;
export type ShardClient = ReturnType<typeof newShardClient>;
export type HealthClient = ReturnType<typeof newHealthClient>;
export type BreakerState = "closed" | "half-open" | "open";

/**
 * Shards sit next to the router: reconnect quickly after a shard restarts instead of
 * grpc-js's default backoff (1 s growing to 120 s), and notice a dead peer on an idle
 * connection (streams may be quiet for long) by keepalive pings. A shard's answers are
 * bounded by its own `maxResponseBytes` (a single large task may pass it), and wrapped
 * in a Forward answer: they are not held to grpc-js's 4 MiB default, which would drop
 * a full answer.
 */
const CHANNEL_OPTIONS = {
  "grpc.max_receive_message_length": -1,
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 2_000,
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  "grpc.keepalive_permit_without_calls": 1,
};

/**
 * Codes that say the shard (or the way to it) failed, as opposed to the caller's
 * request. UNAUTHENTICATED is one: the router authenticates its callers itself, so a
 * shard that refuses a call refuses the router (a secret or certificate the cluster
 * does not agree on).
 */
const FAILURE_CODES = new Set([
  Status.UNAVAILABLE,
  Status.DEADLINE_EXCEEDED,
  Status.INTERNAL,
  Status.UNKNOWN,
  Status.UNAUTHENTICATED,
]);

/** True when `err` counts against the shard's breaker. */
export function isShardFailure(err: unknown): boolean {
  return err instanceof ClientError && FAILURE_CODES.has(err.code);
}

/**
 * A shard refused the router itself (a router secret or certificate the cluster does
 * not agree on): INTERNAL to the caller, whose own credentials the router checked. No
 * retry of the call, or reopening of a stream, would change it.
 */
export class RouterRefused extends ServerError {
  constructor(details: string) {
    super(Status.INTERNAL, details);
  }
}

/**
 * A call known to have stored nothing: the router refused it before sending it to the
 * shard (its breaker is open, or its Forward lane has too many calls waiting), or the
 * shards refused it by fencing after the map was refreshed (`Routing.fenced`).
 */
export class NotStored extends ServerError {}

/** One shard worker: its channels (round-robin), clients and circuit breaker. */
export class ShardConn {
  private readonly channels: Channel[];
  private readonly queues: QueueClient[];
  private turn = 0;
  private readonly lanes: ForwardLane[];
  private laneTurn = 0;
  private lanesMissingUntil = 0;
  readonly internal: ShardClient;
  /** Each channel's health client (`alive` asks on the channel a stream uses). */
  private readonly healths: HealthClient[];
  readonly breaker: CircuitBreaker<[() => Promise<unknown>], unknown>;

  constructor(
    readonly id: string,
    readonly endpoint: string,
    config: RouterConfig,
    logger: Logger,
    secret: string | undefined,
  ) {
    const credentials = channelCredentials({
      caFile: config.shardTlsCaFile || undefined,
      certFile: config.shardTlsCertFile || undefined,
      keyFile: config.shardTlsKeyFile || undefined,
    });
    this.channels = Array.from({ length: config.channelsPerShard }, () =>
      createChannel(endpoint, credentials, CHANNEL_OPTIONS),
    );
    this.queues = this.channels.map(newQueueClient);
    const lost = (leases: number, err: unknown) =>
      logger.warn(
        { shard: id, leases, err: messageOf(err) },
        "leases given back did not reach the shard: their tasks are delivered again when the leases expire",
      );
    this.lanes = this.channels.map(
      (c) =>
        new ForwardLane(
          id,
          newForwardClient(c, secret),
          config.shardTimeoutMs,
          config.forwardMaxPending,
          lost,
        ),
    );
    this.internal = newShardClient(this.channels[0]!, secret);
    this.healths = this.channels.map(newHealthClient);
    this.breaker = new CircuitBreaker((fn: () => Promise<unknown>) => fn(), {
      timeout: false, // deadlines bound every call; long polls may legitimately wait
      errorThresholdPercentage: config.breakerErrorPercent,
      volumeThreshold: config.breakerVolume,
      resetTimeout: config.breakerResetMs,
      rollingCountTimeout: config.breakerWindowMs,
      // an error about the call, not the shard, counts as a success (it answered); but
      // while half-open any success closes the breaker, and only the router's trial may:
      // a caller's call that began before the breaker opened and ends now (its caller
      // left, say) counts as a failure then, and the breaker waits for its next trial
      errorFilter: (err: unknown) => !isShardFailure(err) && !this.breaker.halfOpen,
    });
    // while a shard stays down, its breaker goes half-open and open again every
    // breakerResetMs: logged once when it opens, then at debug until it closes
    let down = false;
    this.breaker.on("open", () => {
      if (down) logger.debug({ shard: id }, "shard breaker trial failed; open again");
      else logger.warn({ shard: id, endpoint }, "shard breaker opened");
      down = true;
    });
    this.breaker.on("halfOpen", () => {
      logger.debug({ shard: id }, "shard breaker half-open");
      // the one trial call is the router's own health check, sent now: a caller's call
      // as the trial could be a long poll (or a redrive), and every other call to the
      // shard would be refused for as long as it waits
      this.breaker.fire(() => this.trial(config.shardTimeoutMs)).catch(() => undefined);
    });
    this.breaker.on("close", () => {
      down = false;
      logger.info({ shard: id }, "shard breaker closed");
    });
  }

  /** The next QueueService client (round-robin over the channels). */
  get queue(): QueueClient {
    return this.nextQueue().client;
  }

  /** The next QueueService client, with the index of its channel (for `alive`). */
  nextQueue(): { client: QueueClient; channel: number } {
    const channel = this.turn++ % this.queues.length;
    return { client: this.queues[channel]!, channel };
  }

  /**
   * The next Forward lane (round-robin over the channels), or undefined while
   * this shard worker is one without them (enqueues then go as EnqueueBatch calls).
   */
  lane(): ForwardLane | undefined {
    const lane = this.lanes[this.laneTurn++ % this.lanes.length]!;
    if (!lane.unsupported) return lane;
    const now = Date.now();
    if (this.lanesMissingUntil === 0) this.lanesMissingUntil = now + RETRY_LANES_MS;
    if (now < this.lanesMissingUntil) return undefined;
    // perhaps upgraded since: ask again
    this.lanesMissingUntil = 0;
    for (const l of this.lanes) l.unsupported = false;
    return lane;
  }

  get breakerState(): BreakerState {
    return this.breaker.opened ? "open" : this.breaker.halfOpen ? "half-open" : "closed";
  }

  /**
   * Runs `fn` through the breaker: refused at once while it is open, counted as a
   * failure when it fails for a reason of the shard's (UNAVAILABLE, DEADLINE_EXCEEDED …).
   * Errors come back as ServerErrors a client can be given as they are.
   */
  async call<T>(fn: (conn: ShardConn) => Promise<T>): Promise<T> {
    try {
      return (await this.breaker.fire(() => fn(this))) as T;
    } catch (err) {
      throw this.toServerError(err);
    }
  }

  /**
   * Whether the shard worker answers at all within `ms` (its health service, whatever
   * it says), on `channel` (a stream's connection may have died while another lives):
   * a worker whose store stalls does, a hung process does not.
   */
  async alive(ms: number, channel = 0): Promise<boolean> {
    const health = this.healths[channel % this.healths.length]!;
    try {
      await health.check({ service: "" }, { signal: AbortSignal.timeout(ms) });
      return true;
    } catch {
      return false;
    }
  }

  /**
   * The breaker's trial: the shard worker answers its health check within `ms`, and
   * serves. A failure is one the breaker counts (UNAVAILABLE, DEADLINE_EXCEEDED).
   */
  private async trial(ms: number): Promise<void> {
    const { status } = await this.healths[0]!.check(
      { service: "" },
      { deadline: new Date(Date.now() + ms) },
    );
    if (status !== Serving.SERVING)
      throw new ClientError(
        "/grpc.health.v1.Health/Check",
        Status.UNAVAILABLE,
        `shard ${this.id} is not serving (health ${Serving[status] ?? status})`,
      );
  }

  /** Throws UNAVAILABLE while the breaker is open (a stream about to open asks first). */
  admit(): void {
    if (this.breaker.opened) throw this.openError();
  }

  /** Counts the outcome of something that did not run through call() (a stream). */
  record(err: unknown | undefined): void {
    if (this.breaker.isShutdown) return;
    // the outcome is made inside the action: an open breaker refuses without running it,
    // and a rejection made before would be left unhandled (on Node 20, the process ends)
    this.breaker
      .fire(() => (err === undefined ? Promise.resolve() : Promise.reject(err)))
      .catch(() => undefined);
  }

  toServerError(err: unknown): unknown {
    if (err instanceof ServerError) return err;
    if (err instanceof ClientError) {
      // not the caller's credentials (those the router checked): the router's own
      if (err.code === Status.UNAUTHENTICATED)
        return new RouterRefused(
          `shard ${this.id} (${this.endpoint}) does not accept this router (its router secret or certificate differs from the router's): ${err.details}`,
        );
      const where = FAILURE_CODES.has(err.code) ? `shard ${this.id} (${this.endpoint}): ` : "";
      const As = err instanceof LaneRefused ? NotStored : ServerError;
      return new As(err.code, where + err.details);
    }
    if ((err as { code?: string })?.code === "EOPENBREAKER") return this.openError();
    return err; // AbortError and the like pass through untouched
  }

  private openError(): NotStored {
    return new NotStored(
      Status.UNAVAILABLE,
      `shard ${this.id} (${this.endpoint}) is unavailable: its circuit breaker is open after repeated failures; retry later`,
    );
  }

  close(): void {
    this.breaker.shutdown();
    for (const l of this.lanes) l.close();
    for (const c of this.channels) c.close();
  }
}

/**
 * The router's connections to every shard of the map: created when a shard
 * appears, replaced when its endpoint changes, closed when it leaves the map (after
 * a grace period, so calls and streams in flight finish on the old connection).
 */
export class ShardPool {
  private readonly conns = new Map<string, ShardConn>();
  private readonly retiring = new Map<NodeJS.Timeout, ShardConn>();

  constructor(
    private readonly config: RouterConfig,
    private readonly logger: Logger,
    /** The routers' secret, presented to the shards' internal service. */
    private readonly secret: string | undefined,
    private readonly retireAfterMs = 60_000,
  ) {}

  /** Follows a new map: opens connections to new shards, retires gone or moved ones. */
  update(map: ShardMap): void {
    for (const [id, info] of Object.entries(map.shards)) {
      const held = this.conns.get(id);
      if (held?.endpoint === info.endpoint) continue;
      if (held) this.retire(held);
      this.conns.set(id, new ShardConn(id, info.endpoint, this.config, this.logger, this.secret));
    }
    for (const [id, conn] of this.conns) {
      if (!Object.hasOwn(map.shards, id)) {
        this.conns.delete(id);
        this.retire(conn);
      }
    }
  }

  /** The connection to shard `id`; UNAVAILABLE when the map does not name it. */
  get(id: string): ShardConn {
    const conn = this.conns.get(id);
    if (!conn)
      throw new ServerError(Status.UNAVAILABLE, `shard ${id} is not in the router's shard map`);
    return conn;
  }

  has(id: string): boolean {
    return this.conns.has(id);
  }

  all(): ShardConn[] {
    return [...this.conns.values()];
  }

  close(): void {
    // connections still finishing what was in flight on them close now too
    for (const [t, conn] of this.retiring) {
      clearTimeout(t);
      conn.close();
    }
    this.retiring.clear();
    for (const conn of this.conns.values()) conn.close();
    this.conns.clear();
  }

  private retire(conn: ShardConn): void {
    // closing ends its forwarding lanes, whose calls end by the shard timeout (which may
    // be set longer than the grace period); unary calls it started finish all the same
    const after = Math.max(
      this.retireAfterMs,
      MAX_LEASE_WAIT_MS + this.config.shardTimeoutMs + RETIRE_MARGIN_MS,
    );
    const timer = setTimeout(() => {
      this.retiring.delete(timer);
      conn.close();
    }, after);
    timer.unref();
    this.retiring.set(timer, conn);
  }
}
