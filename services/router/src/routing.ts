import { setMaxListeners } from "node:events";
import { ClientError, Metadata, ServerError, Status, type CallContext } from "nice-grpc";
import type {
  AckRequest,
  AckResponse,
  EnqueueBatchRequest,
  EnqueueBatchResponse,
  EnqueueRequest,
  EnqueueResponse,
  ExtendRequest,
  ExtendResponse,
  LeaseRequest,
  NackRequest,
  NackResponse,
} from "@codeq/proto";
import { LeaseResponse } from "@codeq/proto";
import { IDENTITY_HEADERS, identityMetadata, type Identity, type Logger } from "@codeq/server-kit";
import {
  commandShardsOf,
  currentShardOf,
  FENCE_REFRESH_MS,
  queueShardsOf,
  type MapCache,
  type ShardMap,
} from "@codeq/shardmap";
import { MAP_VERSION_TRAILER, OWNER_TRAILER } from "@codeq/wire";
import type { RouterConfig } from "./config";
import { forwardService, LaneMissing, LaneRefused, tokensOf, type Caller } from "./forward-lane";
import { BatchBytes } from "./batch-bytes";
import {
  forwardedBatch,
  forwardedCall,
  forwardedTask,
  type ForwardAnswer,
  type CallKind,
} from "./passthrough";
import { Raw } from "./wire-bytes";
import type { Limits } from "./limits";
import type { RouterMetrics } from "./metrics";
import { NotStored, type ShardConn, type ShardPool } from "./shard-pool";

const ENQUEUE = "/codeq.v1.QueueService/Enqueue";

/** The part of a Forward answer that answers the call sent. */
function part<T>(answer: Raw<T> | undefined, conn: ShardConn): Raw<T> {
  if (answer) return answer;
  throw new ClientError(
    forwardService.forward.path,
    Status.INTERNAL,
    `shard ${conn.id} answered a forwarded call without its answer`,
  );
}

/**
 * A batch larger than this goes as a call of its own: on a shared stream it would
 * hold up every caller's batches behind it (HTTP/2 delivers a stream's frames in
 * order), and what a call costs is small beside its size. It also keeps a batch
 * near the shard's message size limit, plus the caller stated beside it, from
 * breaking a stream that other callers' batches are on.
 */
export const LANE_MAX_BYTES = 256 * 1024;

/** A credential checked again and refused with these is no longer accepted. */
const REFUSED_CREDENTIAL = new Set<Status>([Status.UNAUTHENTICATED, Status.PERMISSION_DENIED]);

/** Whether two identities are the same caller with the same rights. */
function sameCaller(a: Identity, b: Identity): boolean {
  return (
    a.tenant === b.tenant &&
    a.principal === b.principal &&
    a.roles.size === b.roles.size &&
    [...a.roles].every((r) => b.roles.has(r)) &&
    (a.commands ?? []).join() === (b.commands ?? []).join() &&
    (a.commands === undefined) === (b.commands === undefined)
  );
}

/** A shard refused an enqueue (fencing): under the map version it holds, another shard owns the queue. */
export class FencedError extends Error {
  constructor(
    readonly shard: string,
    readonly shardVersion: number,
    readonly owner: string | undefined,
    readonly details: string,
  ) {
    super(details);
  }
}

/** Sends an enqueue; `onTrailer` goes into the call options (it reads the fencing trailers). */
export type FencedSend<T> = (conn: ShardConn, onTrailer: (trailer: Metadata) => void) => Promise<T>;

/** What every forwarded call needs: options for the shard call and where to send it. */
export interface Forward {
  readonly identity: Identity;
  readonly metadata: Metadata;
  readonly signal: AbortSignal;
  /**
   * Checks the caller's credential again: false when it is refused now, or stands for
   * another caller (a stream's only; undefined for a call without one: development
   * identity).
   */
  readonly stillAccepted?: () => Promise<boolean>;
}

/**
 * The router's view of the world: the map (through its cache), the shard
 * connections, and the rules every RPC shares (identity, deadlines, resolution,
 * the fenced-enqueue retry).
 */
export class Routing {
  constructor(
    readonly config: RouterConfig,
    readonly cache: MapCache,
    readonly pool: ShardPool,
    readonly logger: Logger,
    readonly metrics: RouterMetrics,
    /** Establishes the caller's identity from its metadata (credentials, or dev identity). */
    private readonly authenticate: (metadata: Metadata) => Promise<Identity>,
    /** The secret the router presents to shard workers. */
    private readonly shardSecret: string | undefined,
    /** Per-tenant rate limits and per-caller stream limits. */
    readonly limits: Limits,
  ) {}

  get map(): ShardMap {
    return this.cache.current();
  }

  /**
   * The caller (authenticated), and what the router states to shards on its behalf. A
   * stream's (`stream`) can have its credential checked again (`stillAccepted`); a
   * unary call's is not given that closure.
   */
  async forward(ctx: CallContext, stream = false): Promise<Forward> {
    const identity = await this.authenticate(ctx.metadata);
    const metadata = identityMetadata(identity, this.shardSecret);
    // a shard holding an older map re-reads it before refusing a queue it does not own
    metadata.set(MAP_VERSION_TRAILER, String(this.cache.version));
    // every shard call of this one (a stream's settlements, a fan-out) listens on it
    setMaxListeners(0, ctx.signal);
    if (!stream || ctx.metadata.get("authorization") === undefined)
      return { identity, metadata, signal: ctx.signal };
    const stillAccepted = () =>
      this.authenticate(ctx.metadata).then(
        (again) => sameCaller(again, identity),
        // refused for the credential's sake; not when it could not be checked now
        (err: unknown) => !REFUSED_CREDENTIAL.has((err as { code?: unknown }).code as Status),
      );
    return { identity, metadata, signal: ctx.signal, stillAccepted };
  }

  /**
   * Call options for a shard call: the caller's cancellation, the router's deadline cap,
   * and the map version as of now (a retry after a fencing refusal and a map refresh
   * states the newer version, so a shard behind it re-reads its map).
   */
  options(f: Forward, timeoutMs = this.config.shardTimeoutMs) {
    f.metadata.set(MAP_VERSION_TRAILER, String(this.cache.version));
    return { metadata: f.metadata, signal: f.signal, deadline: new Date(Date.now() + timeoutMs) };
  }

  /** The caller of `f` as a forwarded call states it (the identity metadata's values). */
  caller(f: Forward): Caller {
    const m = f.metadata;
    return {
      tenant: m.get(IDENTITY_HEADERS.tenant) ?? "",
      principal: m.get(IDENTITY_HEADERS.principal) ?? "",
      roles: m.get(IDENTITY_HEADERS.roles) ?? "",
      commands: m.get(IDENTITY_HEADERS.commands),
      mapVersion: this.cache.version,
    };
  }

  /**
   * Stores a batch on `conn`'s shard: as a message on one of its Forward lanes, or
   * by an EnqueueBatch call when the shard worker has none.
   */
  async storeBatch(
    conn: ShardConn,
    f: Forward,
    req: EnqueueBatchRequest,
    onTrailer: (trailer: Metadata) => void,
  ): Promise<Raw<EnqueueBatchResponse>> {
    const sent = await this.onLane(conn, f, "enqueue", () => forwardedBatch(req));
    if (sent) return part(sent.enqueued, conn);
    // a shard worker's own EnqueueBatch answers bytes it cannot decode INTERNAL, where
    // a router answers INVALID_ARGUMENT: a batch still in bytes is decoded here first
    // (and still sent as those bytes)
    const checked = req instanceof BatchBytes ? req.checked() : req;
    return conn.queue.enqueueBatch(checked, { ...this.options(f), onTrailer });
  }

  /** Stores one task as `storeBatch` does; a refused task is the call's error, as Enqueue answers it. */
  async storeOne(
    conn: ShardConn,
    f: Forward,
    req: EnqueueRequest,
    onTrailer: (trailer: Metadata) => void,
  ): Promise<Raw<EnqueueResponse> | EnqueueResponse> {
    const sent = await this.onLane(conn, f, "enqueue", () => forwardedTask(req));
    if (!sent) return conn.queue.enqueue(req, { ...this.options(f), onTrailer });
    const [result] = part(sent.enqueued, conn).value.results;
    const status = result?.status;
    if (!result || !status)
      throw new ClientError(ENQUEUE, Status.INTERNAL, `shard ${conn.id} answered no result`);
    if (status.code !== Status.OK) throw new ClientError(ENQUEUE, status.code, status.message);
    return { taskId: result.taskId, duplicate: result.duplicate, state: result.state };
  }

  /** Acks on `conn`'s shard, on a Forward lane as `storeBatch` stores. */
  async ack(conn: ShardConn, f: Forward, req: AckRequest): Promise<Raw<AckResponse>> {
    const sent = await this.onLane(conn, f, "ack", () => forwardedCall("ack", req));
    return sent ? part(sent.acked, conn) : conn.queue.ack(req, this.options(f));
  }

  async nack(conn: ShardConn, f: Forward, req: NackRequest): Promise<Raw<NackResponse>> {
    const sent = await this.onLane(conn, f, "nack", () => forwardedCall("nack", req));
    return sent ? part(sent.nacked, conn) : conn.queue.nack(req, this.options(f));
  }

  async extend(conn: ShardConn, f: Forward, req: ExtendRequest): Promise<Raw<ExtendResponse>> {
    const sent = await this.onLane(conn, f, "extend", () => forwardedCall("extend", req));
    return sent ? part(sent.extended, conn) : conn.queue.extend(req, this.options(f));
  }

  /**
   * Leases on `conn`'s shard: a lease that does not wait on a Forward lane, a
   * waiting one as a call of its own (on a stream it would hold a slot all along).
   */
  async lease(
    conn: ShardConn,
    f: Forward,
    req: LeaseRequest,
    timeoutMs?: number,
  ): Promise<Raw<LeaseResponse>> {
    if (req.waitMs === 0) {
      const sent = await this.onLane(conn, f, "lease", () => forwardedCall("lease", req));
      const leased = sent && part(sent.leased, conn);
      // the caller left while the shard leased: give the tasks back, as a shard does
      // when the caller of a Lease call leaves, and answer none of them
      if (leased && f.signal.aborted) {
        void conn.lane()?.giveBack(tokensOf(leased), this.caller(f));
        return new Raw(new Uint8Array(0), LeaseResponse);
      }
      if (leased) return leased;
    } else this.metrics.forwarded.inc({ shard: conn.id, call: "lease", path: "call" });
    return conn.queue.lease(req, this.options(f, timeoutMs));
  }

  /**
   * Gives back leases `conn` took for the caller of `f` that the caller will not get,
   * uncounted; resolves once answered, never rejects (without a Forward lane, or if it
   * fails, they expire).
   */
  async giveBack(conn: ShardConn, f: Forward, tokens: readonly string[]): Promise<void> {
    await conn.lane()?.giveBack(tokens, this.caller(f));
  }

  /**
   * Sends `call` (its fields of a ForwardRequest) on one of `conn`'s Forward lanes;
   * undefined when the shard worker has none, or the call is too large to share a
   * stream: nothing was sent, and the caller makes a call of its own.
   */
  private async onLane(
    conn: ShardConn,
    f: Forward,
    kind: "enqueue" | CallKind,
    call: () => Uint8Array,
  ): Promise<ForwardAnswer | undefined> {
    const lane = conn.lane();
    const bytes = lane && call();
    if (!lane || !bytes || bytes.length > LANE_MAX_BYTES) {
      this.metrics.forwarded.inc({ shard: conn.id, call: kind, path: "call" });
      return undefined;
    }
    let path: "stream" | "call" | "refused" = "stream";
    try {
      // a lease stops waiting when its caller leaves (what it took goes back when it comes)
      const lease = kind === "lease";
      return await lane.send(bytes, this.caller(f), lease, lease ? f.signal : undefined);
    } catch (err) {
      if (err instanceof LaneMissing) {
        path = "call";
        return undefined; // a shard worker without Forward: nothing was sent
      }
      if (err instanceof LaneRefused) path = "refused";
      throw err;
    } finally {
      this.metrics.forwarded.inc({ shard: conn.id, call: kind, path });
    }
  }

  currentShard(command: string, tenant: string): string {
    return currentShardOf(this.map, command, tenant);
  }

  /**
   * Every shard that may hold tasks of the caller's queues of `commands` (of every
   * tenant with `allTenants`), shards being drained first, each once.
   */
  leaseShards(commands: readonly string[], tenant: string, allTenants: boolean): string[] {
    const map = this.map;
    const lists = commands.map((c) =>
      allTenants ? commandShardsOf(map, c) : queueShardsOf(map, c, tenant),
    );
    // drained shards lead each list; keep them ahead of every list's current shard
    const ordered: string[] = [];
    const longest = Math.max(0, ...lists.map((l) => l.length));
    for (let i = 0; i < longest; i++) for (const l of lists) if (l[i]) ordered.push(l[i]!);
    return [...new Set(ordered)];
  }

  /**
   * Sends an enqueue to the queue's current shard. When the shard refuses because
   * under the map it holds another shard owns the queue (fencing), the router
   * refreshes its map and sends once more to whatever the map then names.
   */
  async fenced<T>(f: Forward, resolve: () => string, send: FencedSend<T>): Promise<T> {
    try {
      return await this.sendFenced(resolve(), send);
    } catch (err) {
      if (!(err instanceof FencedError)) throw err;
      await this.beforeFencedRetry(f, 1);
      try {
        return await this.sendFenced(resolve(), send);
      } catch (again) {
        if (again instanceof FencedError)
          throw new NotStored(Status.UNAVAILABLE, `${again.details} (after a map refresh)`);
        throw again;
      }
    }
  }

  /**
   * Before the one retry of `items` enqueues a shard refused by fencing: the map is
   * refreshed, waiting at most FENCE_REFRESH_MS (a control store that does not answer
   * holds no caller; the retry then goes by the map held, and a second refusal is
   * answered UNAVAILABLE); a caller that left meanwhile is sent nothing more.
   */
  async beforeFencedRetry(f: Forward, items: number): Promise<void> {
    this.metrics.fencedRetries.inc(items);
    await this.cache.refreshWithin(FENCE_REFRESH_MS);
    if (f.signal.aborted)
      throw new ServerError(Status.CANCELLED, "the caller left before its enqueue was sent again");
  }

  /** Sends to `shard`; a fencing refusal comes back as FencedError. */
  sendFenced<T>(shard: string, send: FencedSend<T>): Promise<T> {
    const conn = this.pool.get(shard);
    return conn.call(async (c) => {
      let trailer: Metadata | undefined;
      try {
        return await send(c, (t) => (trailer = t));
      } catch (err) {
        const version = trailer?.get(MAP_VERSION_TRAILER);
        if (err instanceof ClientError && err.code === Status.UNAVAILABLE && version) {
          throw new FencedError(shard, Number(version), trailer?.get(OWNER_TRAILER), err.details);
        }
        throw err;
      }
    });
  }
}
