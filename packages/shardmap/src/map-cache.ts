/**
 * A resilient cache of the shard map (Vitess srvtopo style): what routers and
 * shard workers read on every call. It loads the map at start (retrying until the
 * first success or a timeout), follows announcements (an announced version above
 * the held one triggers a refresh), polls as a fallback, runs ONE refresh at a
 * time (triggers arriving meanwhile coalesce into one more), and keeps serving the
 * last good map when the source fails, saying so through `status()` (stale,
 * lastError, loadedAtMs) and counters for hits, refreshes and errors. Refresh
 * (how often to reload) and expiry (when an unconfirmed map counts as stale) are
 * separate settings; an expired map is still served.
 */
import { withTimeout } from "@codeq/common";
import { MapNotLoadedError, NoShardMapError, reporter, toError } from "./errors";
import type { ShardMap } from "./shard-map";
import type { MapSource } from "./source";

export interface MapCacheOptions {
  /** Fallback poll interval, ms. Default 2000. */
  pollMs?: number;
  /** Delay before the next attempt after a failed refresh (and during start), ms. Default min(pollMs, 500). */
  retryMs?: number;
  /** How long start() keeps trying to load a first map, ms. Default 30000. */
  startTimeoutMs?: number;
  /** A source read taking longer counts as failed, ms. Default 5000. */
  refreshTimeoutMs?: number;
  /** A map not confirmed by a refresh for this long is reported stale, ms. Default 3 × pollMs. */
  staleAfterMs?: number;
  /** Refresh failures and listener errors, for logging. */
  onError?: (err: Error) => void;
  now?: () => number;
}

export interface MapCacheCounters {
  /** Reads of current(). */
  hits: number;
  /** Reads of the source (successful or not). */
  refreshes: number;
  /** Failed reads of the source. */
  errors: number;
}

export interface MapCacheStatus {
  /** The held version; 0 before the first load. */
  version: number;
  /** The last refresh failed, or none succeeded for staleAfterMs: the map served may be old. */
  stale: boolean;
  /** Why the last refresh failed; undefined once one succeeds. */
  lastError?: Error;
  /** When a refresh last succeeded (0 = never). */
  loadedAtMs: number;
  /**
   * Whether announcements of changes arrive now (false: changes arrive by polling
   * alone); undefined for a source without announcements (a file).
   */
  announcements?: boolean;
  counters: Readonly<MapCacheCounters>;
}

interface Deferred {
  readonly promise: Promise<void>;
  readonly resolve: () => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

export type MapChangeListener = (map: ShardMap, previous: ShardMap | undefined) => void;

export class MapCache {
  private map: ShardMap | undefined;
  private loadedAtMs = 0;
  private lastError: Error | undefined;
  private readonly counters: MapCacheCounters = { hits: 0, refreshes: 0, errors: 0 };
  /** The load running now. */
  private loading: Promise<void> | undefined;
  /** One more load, after the one running: what refreshes asked for since it began wait for. */
  private queued: Deferred | undefined;
  private timer: NodeJS.Timeout | undefined;
  private unwatch: (() => void) | undefined;
  private polling = false;
  private stopped = false;
  private readonly listeners = new Set<MapChangeListener>();
  private readonly pollMs: number;
  private readonly retryMs: number;
  private readonly startTimeoutMs: number;
  private readonly refreshTimeoutMs: number;
  private readonly staleAfterMs: number;
  private readonly now: () => number;
  /** onError, which may not end a refresh by throwing itself (the failure is in status()). */
  private readonly report: (err: Error) => void;

  constructor(
    private readonly source: MapSource,
    private readonly options: MapCacheOptions = {},
  ) {
    this.pollMs = options.pollMs ?? 2_000;
    this.retryMs = options.retryMs ?? Math.min(this.pollMs, 500);
    this.startTimeoutMs = options.startTimeoutMs ?? 30_000;
    this.refreshTimeoutMs = options.refreshTimeoutMs ?? 5_000;
    this.staleAfterMs = options.staleAfterMs ?? 3 * this.pollMs;
    this.now = options.now ?? Date.now;
    this.report = reporter(options.onError);
  }

  /**
   * Follows announcements, loads the first map (retrying every retryMs), then polls.
   * Throws MapNotLoadedError (cause: the last failure) after startTimeoutMs.
   */
  async start(): Promise<ShardMap> {
    if (this.unwatch || this.stopped) throw new Error("MapCache.start() may be called once");
    // Watch first: an announcement between the first load and subscribing is not lost.
    this.unwatch = this.source.watch((version) => this.onAnnounce(version));
    const deadline = this.now() + this.startTimeoutMs;
    for (;;) {
      await this.refresh();
      if (this.map) break;
      const left = deadline - this.now();
      if (this.stopped || left <= 0) {
        this.stop();
        throw new MapNotLoadedError(
          `no shard map loaded within ${this.startTimeoutMs} ms: ${this.lastError?.message ?? "stopped"}`,
          { cause: this.lastError },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(this.retryMs, left)));
    }
    this.polling = true;
    this.schedule();
    return this.map;
  }

  /** The last good map; counts a hit. Throws MapNotLoadedError before the first load. */
  current(): ShardMap {
    if (!this.map) throw new MapNotLoadedError("the shard map has not been loaded yet");
    this.counters.hits++;
    return this.map;
  }

  /**
   * Reloads from the source and resolves with the map held afterwards, once a read
   * begun after this call has ended: now, or after the read in flight (one more read
   * then runs, shared by every call made meanwhile; calls made during that one wait
   * for the next). Never rejects: failures are in status().
   */
  refresh(): Promise<ShardMap | undefined> {
    if (this.loading) {
      this.queued ??= deferred();
      return this.queued.promise.then(() => this.map);
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const first = deferred();
    this.loading = first.promise;
    void this.run(first);
    return first.promise.then(() => this.map);
  }

  /**
   * refresh(), waited for at most `ms`: resolves with the map held then, whether or
   * not the read has ended (a control store that does not answer holds no caller).
   */
  refreshWithin(ms: number): Promise<ShardMap | undefined> {
    return withTimeout(this.refresh(), ms, "the shard map refresh").catch(() => this.map);
  }

  /** The version of the map held (0 before the first load): `status().version`, without the copy. */
  get version(): number {
    return this.map?.version ?? 0;
  }

  status(): MapCacheStatus {
    const expired = this.map !== undefined && this.now() - this.loadedAtMs > this.staleAfterMs;
    const announcements = this.stopped ? undefined : this.source.announcing?.();
    return {
      version: this.map?.version ?? 0,
      stale: this.lastError !== undefined || expired,
      ...(this.lastError ? { lastError: this.lastError } : {}),
      loadedAtMs: this.loadedAtMs,
      ...(announcements === undefined ? {} : { announcements }),
      counters: { ...this.counters },
    };
  }

  /** Calls `listener(map, previous)` whenever the held version changes (the first load included). */
  onChange(listener: MapChangeListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Stops following and polling; the last map stays readable. */
  stop(): void {
    this.stopped = true;
    this.polling = false;
    this.unwatch?.();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private onAnnounce(version: number): void {
    if (this.stopped) return;
    if (!this.map || version > this.map.version) void this.refresh();
  }

  /** Runs `first`'s read, then each one queued meanwhile, one at a time. */
  private async run(first: Deferred): Promise<void> {
    let load: Deferred | undefined = first;
    while (load) {
      if (!this.stopped) await this.loadOnce(); // never rejects
      load.resolve();
      load = this.queued;
      this.queued = undefined;
      this.loading = load?.promise;
    }
    this.schedule();
  }

  private async loadOnce(): Promise<void> {
    this.counters.refreshes++;
    try {
      const map = await withTimeout(this.source.get(), this.refreshTimeoutMs, "the source");
      if (!map) throw new NoShardMapError();
      this.loadedAtMs = this.now();
      this.lastError = undefined;
      // Any other map is taken, a lower version too: a store restored from a backup is
      // the truth. So is the same version written at another time: a store restored
      // to an older version while this process could not reach it, then written to
      // that version again, holds another map under the number held here.
      if (map.version !== this.map?.version || map.updatedAtMs !== this.map.updatedAtMs)
        this.replace(map);
    } catch (err) {
      this.counters.errors++;
      this.lastError = toError(err);
      this.report(this.lastError);
    }
  }

  private replace(map: ShardMap): void {
    const previous = this.map;
    this.map = map;
    for (const listener of this.listeners) {
      try {
        listener(map, previous);
      } catch (err) {
        this.report(toError(err));
      }
    }
  }

  /** The next poll: pollMs after a success, retryMs after a failure. */
  private schedule(): void {
    if (!this.polling || this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    const delay = this.lastError ? this.retryMs : this.pollMs;
    this.timer = setTimeout(() => void this.refresh(), delay);
    this.timer.unref();
  }
}
