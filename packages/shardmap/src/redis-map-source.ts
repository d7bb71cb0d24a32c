/**
 * The shard map in the control store (KVRocks, or Redis as its stand-in). The map
 * is one JSON document; a write is one Lua script that declares both keys it
 * touches and uses only GET, SET, LPUSH, LTRIM and LINDEX: it compares the stored version,
 * sets the new map and appends the audit entry (capped by LTRIM), deciding on its
 * own return codes. The client publishes the new version after the script
 * succeeds. Announcements arrive on a separate connection in subscriber mode; it
 * subscribes again after every reconnect and then re-announces the stored version
 * to its watchers, so what was published while it was away is not missed. That
 * connection sends nothing of its own once subscribed, so it is pinged every
 * `pingMs`: a connection whose peer is gone without closing it (a host lost, a
 * NAT entry dropped) answers no ping, and ioredis's socket timeout replaces it,
 * where it would otherwise stay silent, every announcement lost, until TCP gave up.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { Redis, type RedisOptions } from "ioredis";
import { reporter, ShardMapError, toError, VersionConflictError } from "./errors";
import {
  auditKey,
  changedChannel,
  CONTROL_SOCKET_TIMEOUT_MS,
  DEFAULT_AUDIT_CAP,
  DEFAULT_PREFIX,
  shardMapKey,
  type ShardMap,
  type ShardMapDraft,
} from "./shard-map";
import {
  checkPage,
  prepareWrite,
  type AuditEntry,
  type ChangeInfo,
  type MapSource,
} from "./source";
import { assertShardMap } from "./validate";

/** Where the `.lua` files live: beside src/ and dist/, so both find them. */
const LUA_DIR = path.join(__dirname, "..", "lua");
let casScript: string | undefined;
const CAS_COMMAND = "codeqShardMapCompareAndSet";

/** The script's return codes (see lua/compare-and-set-2.lua). */
enum CasCode {
  Written = 0,
  VersionConflict = -1,
  Unreadable = -2,
}

export interface RedisMapSourceOptions {
  /** redis://[:password@]host:port of the control store. */
  url: string;
  /** Key prefix. Default "codeq" (keys codeq:ctl:shardmap, codeq:ctl:audit). */
  prefix?: string;
  /** How many audit entries to keep. Default 10000. */
  auditCap?: number;
  /** The clock stamping updatedAtMs and audit entries. Default Date.now. */
  now?: () => number;
  /** Connection and announcement errors, for logging (they are never thrown). */
  onError?: (err: Error) => void;
  /** Extra ioredis options for both connections. */
  redisOptions?: RedisOptions;
  /** How often the announcements connection is pinged while subscribed, ms. Default 10000. */
  pingMs?: number;
}

/** How many of the newest audit entries a write whose reply was lost is looked for in. */
const WRITTEN_LOOKBACK = 100;
/** The announcements connection's ping interval, ms (RedisMapSourceOptions.pingMs). */
const SUBSCRIBER_PING_MS = 10_000;

type CasCommand = (...keysThenArgs: string[]) => Promise<[number, number]>;

export class RedisMapSource implements MapSource {
  private readonly redis: Redis;
  private subscriber: Redis | undefined;
  /** The subscriber's SUBSCRIBE has been acknowledged on its current connection. */
  private live = false;
  /** Pings the subscriber while it is live. */
  private heartbeat: NodeJS.Timeout | undefined;
  /** A ping of the subscriber waits for its answer. */
  private pinging = false;
  private readonly watchers = new Set<(version: number) => void>();
  private readonly mapKey: string;
  private readonly auditKey: string;
  private readonly channel: string;
  private readonly auditCap: number;
  private readonly now: () => number;
  private readonly onError: (err: Error) => void;

  constructor(private readonly options: RedisMapSourceOptions) {
    const prefix = options.prefix ?? DEFAULT_PREFIX;
    this.mapKey = shardMapKey(prefix);
    this.auditKey = auditKey(prefix);
    this.channel = changedChannel(prefix);
    this.auditCap = options.auditCap ?? DEFAULT_AUDIT_CAP;
    if (!Number.isInteger(this.auditCap) || this.auditCap < 1)
      throw new RangeError(`auditCap must be a positive integer, got ${this.auditCap}`);
    this.now = options.now ?? Date.now;
    // a logger that throws is not let end a ping or the process
    this.onError = reporter(options.onError);
    if (options.pingMs !== undefined && !(options.pingMs >= 100))
      throw new RangeError(`pingMs must be at least 100, got ${options.pingMs}`);
    this.redis = this.connect();
    casScript ??= fs.readFileSync(path.join(LUA_DIR, "compare-and-set-2.lua"), "utf8");
    this.redis.defineCommand(CAS_COMMAND, { lua: casScript, numberOfKeys: 2 });
  }

  async get(): Promise<ShardMap | undefined> {
    const raw = await this.redis.get(this.mapKey);
    if (raw === null) return undefined;
    return assertShardMap(this.parse(raw), `stored shard map at ${this.mapKey}`);
  }

  async compareAndSet(
    expectedVersion: number,
    next: ShardMapDraft,
    change: ChangeInfo,
    previous?: ShardMap,
  ): Promise<ShardMap> {
    const { map, audit } = prepareWrite(expectedVersion, next, change, this.now(), previous);
    const json = JSON.stringify(map);
    const cas = (this.redis as unknown as Record<string, CasCommand>)[CAS_COMMAND]!;
    // a random id of this call: a call sent again after a lost reply finds its own
    // entry newest (compare-and-set-2.lua), another writer's same edit does not
    const entry = JSON.stringify({ ...audit, call: randomBytes(8).toString("hex") });
    const [code, version] = await cas
      .call(
        this.redis,
        this.mapKey,
        this.auditKey,
        String(expectedVersion),
        json,
        entry,
        String(this.auditCap),
      )
      .catch(async (err: unknown) => {
        // the reply may be what was lost (ioredis gives up on a command after a failed
        // reconnect, whether or not the store ran it): the entry found in the audit list
        // says it was written; not found is no proof (a store that stalled may still run
        // the first send, on the connection given up on, after this read)
        if (await this.written(entry).catch(() => false)) return [CasCode.Written, 0];
        throw new Error(
          `${toError(err).message}; whether the change was written is not known: read the map before trying again`,
          { cause: err },
        );
      });
    switch (code) {
      case CasCode.Written:
        break;
      case CasCode.VersionConflict:
        throw new VersionConflictError(expectedVersion, version);
      case CasCode.Unreadable:
        throw new ShardMapError(
          `the value at ${this.mapKey} is not a shard map (no JSON with a numeric version); fix or delete it by hand`,
        );
      default:
        throw new ShardMapError(`unexpected reply ${code} from the compare-and-set script`);
    }
    // The write stands even if the announcement is lost: readers also poll.
    await this.redis.publish(this.channel, String(map.version)).catch((err: unknown) => {
      this.onError(toError(err));
    });
    return JSON.parse(json) as ShardMap;
  }

  watch(onAnnounce: (version: number) => void): () => void {
    const watcher = (version: number) => onAnnounce(version);
    this.watchers.add(watcher);
    if (!this.subscriber) this.subscriber = this.openSubscriber();
    else if (this.live) void this.catchUp(this.subscriber, [watcher]);
    return () => {
      if (this.watchers.delete(watcher) && this.watchers.size === 0) this.dropSubscriber();
    };
  }

  announcing(): boolean {
    return this.live;
  }

  async listAudit(limit = 100, offset = 0): Promise<AuditEntry[]> {
    checkPage(limit, offset);
    const raw = await this.redis.lrange(this.auditKey, offset, offset + limit - 1);
    return raw.map((entry) => {
      const { call: _call, ...audit } = JSON.parse(entry) as AuditEntry & { call?: string };
      return audit;
    });
  }

  async close(): Promise<void> {
    this.watchers.clear();
    this.dropSubscriber();
    this.redis.disconnect();
  }

  /**
   * Whether the write whose audit entry is `entry` (unique to its call) was made: the
   * script pushes the entry with the map, so it is among the newest while any write
   * that came after is (a write then overwritten was made all the same).
   */
  private async written(entry: string): Promise<boolean> {
    const newest = await this.redis.lrange(this.auditKey, 0, WRITTEN_LOOKBACK - 1);
    return newest.includes(entry);
  }

  private connect(extra: RedisOptions = {}): Redis {
    const redis = new Redis(this.options.url, {
      protocol: 2,
      // Fail a command after one reconnect attempt: callers (the cache) retry on their own.
      maxRetriesPerRequest: 1,
      connectTimeout: 2_000,
      // Reconnect at least every second (ioredis backs off to 5 s), so a returning control
      // store is noticed, and commands fail, within about a second.
      retryStrategy: (times: number) => Math.min(50 * 2 ** (times - 1), 1_000),
      // a connection that receives nothing this long while a command waits is dead (its
      // host gone without closing it): replaced, rather than held until TCP gives up
      socketTimeout: CONTROL_SOCKET_TIMEOUT_MS,
      ...this.options.redisOptions,
      ...extra,
    });
    redis.on("error", (err: Error) => this.onError(err));
    return redis;
  }

  private openSubscriber(): Redis {
    // Subscribing is done by hand on every "ready", so the catch-up read follows the ack.
    const sub = this.connect({ autoResubscribe: false });
    sub.on("ready", () => void this.subscribe(sub));
    sub.on("close", () => {
      if (sub === this.subscriber) this.live = false;
    });
    this.heartbeat = setInterval(() => this.ping(sub), this.options.pingMs ?? SUBSCRIBER_PING_MS);
    this.heartbeat.unref();
    sub.on("message", (channel: string, message: string) => {
      if (channel !== this.channel || sub !== this.subscriber) return;
      const version = Number(message);
      if (Number.isSafeInteger(version) && version >= 0) this.deliver([...this.watchers], version);
      else this.onError(new Error(`ignored announcement ${JSON.stringify(message)} on ${channel}`));
    });
    return sub;
  }

  private async subscribe(sub: Redis): Promise<void> {
    try {
      await sub.subscribe(this.channel);
      if (sub !== this.subscriber) return;
      this.live = true;
      await this.catchUp(sub, [...this.watchers]);
    } catch (err) {
      this.onError(toError(err));
    }
  }

  private dropSubscriber(): void {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    this.subscriber?.disconnect();
    this.subscriber = undefined;
    this.live = false;
  }

  /**
   * One ping of a live subscriber. An answer that does not come within the socket
   * timeout ends the connection (ioredis destroys it), and the subscriber reconnects,
   * subscribes again and catches up.
   */
  private ping(sub: Redis): void {
    if (sub !== this.subscriber || !this.live || this.pinging) return;
    this.pinging = true;
    sub
      .ping()
      .catch((err: unknown) => {
        // an error answered is an answer: the connection lives
        if (sub !== this.subscriber || (err as Error | undefined)?.name === "ReplyError") return;
        this.live = false;
        this.onError(
          new ShardMapError(
            `the control store's announcements connection did not answer a ping (${toError(err).message}); reconnecting, changes arrive by polling meanwhile`,
            { cause: err },
          ),
        );
      })
      .finally(() => (this.pinging = false));
  }

  /** Announces the stored version to `watchers` (0 when there is no map). */
  private async catchUp(sub: Redis, watchers: Array<(version: number) => void>): Promise<void> {
    try {
      const raw = await this.redis.get(this.mapKey);
      const version = raw === null ? 0 : (this.parse(raw) as { version?: unknown }).version;
      if (typeof version !== "number") throw new ShardMapError(`${this.mapKey} has no version`);
      if (sub === this.subscriber) this.deliver(watchers, version);
    } catch (err) {
      this.onError(toError(err));
    }
  }

  private deliver(watchers: Array<(version: number) => void>, version: number): void {
    for (const watcher of watchers) {
      if (!this.watchers.has(watcher)) continue;
      try {
        watcher(version);
      } catch (err) {
        this.onError(toError(err));
      }
    }
  }

  private parse(raw: string): unknown {
    try {
      return JSON.parse(raw);
    } catch (err) {
      throw new ShardMapError(`the value at ${this.mapKey} is not JSON`, { cause: err });
    }
  }
}
