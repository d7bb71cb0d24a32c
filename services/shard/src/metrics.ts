import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { withTimeout } from "@codeq/common";
import { EngineError, type QueueEngine } from "@codeq/engine";
import {
  collectProcessMetrics,
  registerMapCacheMetrics,
  RpcMetrics,
  serveMetrics,
  type Logger,
  type MapCacheView,
  type MetricsServer,
} from "@codeq/server-kit";
import { FailureLog } from "./failure-log";

/**
 * Queues whose stats are read at once (pipelined on one connection): the depth sums here
 * and ListQueues pages.
 */
export const STATS_CHUNK = 100;

/** Tasks per state, summed over the tenants of one command. */
export interface Depth {
  ready: number;
  scheduled: number;
  leased: number;
  dead: number;
  completed: number;
  /** Reserved by a move, between this shard and another (docs/migration.md). */
  moving: number;
}

/** Tasks a command's queues hold on the shard: every state but completed. */
export const storedOf = (d: Depth): number => d.ready + d.scheduled + d.leased + d.dead + d.moving;

/**
 * The commands of which the shard keeps tasks, sorted: completed ones too (a queue that
 * moves takes its idempotency keys and GetTask with it).
 */
export function commandsHeld(depth: ReadonlyMap<string, Depth>): string[] {
  const commands: string[] = [];
  for (const [command, d] of depth) if (storedOf(d) + d.completed > 0) commands.push(command);
  return commands.sort();
}

/** Commands whose depth series are kept at 0 once empty, at most (past it, they vanish as before). */
const MAX_DEPTH_COMMANDS = 10_000;

function emptyDepth(): Depth {
  return { ready: 0, scheduled: 0, leased: 0, dead: 0, completed: 0, moving: 0 };
}

/**
 * Prometheus metrics of one shard worker (SPEC §6):
 * codeq_queue_depth{command,shard,type}, codeq_shard_operation_duration_seconds{shard,operation},
 * codeq_shard_available{shard}, codeq_rpc_requests_total{method,code},
 * codeq_rpc_duration_seconds{method}, codeq_shard_map_version{shard},
 * codeq_shard_map_stale{shard}, codeq_shard_map_announcements{shard}, codeq_shard_map_reads_total{shard},
 * codeq_shard_map_refreshes_total{shard}, codeq_shard_map_refresh_errors_total{shard},
 * plus stream and background counters.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly operation: Histogram<"shard" | "operation">;
  /** Engine operations that failed (the store away, a script error), by operation. */
  readonly operationFailures: Counter<"shard" | "operation">;
  readonly available: Gauge<"shard">;
  readonly rpc: RpcMetrics;
  readonly openStreams: Gauge;
  readonly delivered: Counter;
  readonly released: Counter;
  readonly forgotten: Counter;
  readonly givenBack: Counter;
  readonly reaped: Counter;
  readonly cleaned: Counter;
  readonly moverYield: Counter;
  readonly keysUnchecked: Counter;
  /** The shard map the worker follows; a standalone shard has none (version 0, not stale). */
  private map: () => MapCacheView = () => ({ version: 0, stale: false });
  private readonly depthErrors: Counter;
  /** The depth read in progress, if any. */
  private depthRead: Promise<Map<string, Depth>> | undefined;
  /** The depth read as the scrape in progress waits for it (at most depthScrapeMs). */
  private depthScrape: Promise<Map<string, Depth>> | undefined;
  /** The depth read a scrape gave up on, counted failed already. */
  private depthGivenUp: Promise<Map<string, Depth>> | undefined;
  /** Commands the depth gauge has reported: each keeps a series (0 when empty) while the process runs. */
  private readonly depthCommands = new Set<string>();
  /** How busy the event loop is, 0–1 (a `LoadGauge`); 0 until one is followed. */
  private busy: () => number = () => 0;

  private readonly failures: FailureLog | undefined;

  constructor(
    private readonly shard: string,
    private readonly engine: QueueEngine,
    logger?: Logger,
    /** How long a scrape waits for the depth read (ShardConfig.depthScrapeTimeoutMs). */
    private readonly depthScrapeMs = 5_000,
  ) {
    this.failures = logger && new FailureLog(logger.child({ shard }));
    const registers = [this.registry];
    collectProcessMetrics(this.registry, "codeq_shard_process_");
    this.operation = new Histogram({
      name: "codeq_shard_operation_duration_seconds",
      help: "Time of one engine operation (one script call) on the shard's store.",
      labelNames: ["shard", "operation"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    this.operationFailures = new Counter({
      name: "codeq_shard_operation_failures_total",
      help: "Engine operations (script calls) that failed: the store did not answer, or a script failed.",
      labelNames: ["shard", "operation"],
      registers,
    });
    this.available = new Gauge({
      name: "codeq_shard_available",
      help: "1 while the shard's store answers.",
      labelNames: ["shard"],
      registers,
    });
    this.rpc = new RpcMetrics(this.registry);
    this.openStreams = new Gauge({
      name: "codeq_lease_streams_open",
      help: "Open LeaseStreams.",
      registers,
    });
    this.delivered = new Counter({
      name: "codeq_tasks_delivered_total",
      help: "Tasks leased to workers.",
      registers,
    });
    this.released = new Counter({
      name: "codeq_leases_released_total",
      help: "Leases released because their stream closed (the attempt counted, except for those the drain at shutdown took back).",
      registers,
    });
    this.givenBack = new Counter({
      name: "codeq_leases_given_back_total",
      help: "Leases given back undelivered (the caller left, the answer had no room for them, or a reconnect lost the reply): ready again, the attempt not counted.",
      registers,
    });
    this.forgotten = new Counter({
      name: "codeq_stream_leases_forgotten_total",
      help: "Leases a stream stopped tracking while they were (or may have been) still leased, because it held more unsettled than it may; they expire instead of being released when it closes.",
      registers,
    });
    this.reaped = new Counter({
      name: "codeq_leases_expired_total",
      help: "Expired leases taken back by the reaper.",
      registers,
    });
    this.cleaned = new Counter({
      name: "codeq_tasks_retention_deleted_total",
      help: "Completed and dead tasks deleted by retention.",
      registers,
    });
    this.moverYield = new Counter({
      name: "codeq_mover_yield_seconds_total",
      help: "Time the migration mover waited for a busy shard worker (the target, or this one) before a batch.",
      registers,
    });
    this.keysUnchecked = new Counter({
      name: "codeq_idempotency_keys_unchecked_total",
      help: "Idempotency keys of enqueues stored while the shard their queue is moving from could not be asked whether it holds them (a retry may then store a duplicate).",
      registers,
    });
    const depth = new Gauge({
      name: "codeq_queue_depth",
      help: "Tasks per queue state on this shard, summed over tenants.",
      labelNames: ["command", "shard", "type"],
      registers,
      collect: async () => {
        let sums: Map<string, Depth>;
        try {
          sums = await this.depthForScrape();
        } catch {
          // without this, one failed read fails the whole scrape, codeq_shard_available
          // included: the metric that says the store is away (the read counted its failure)
          depth.reset();
          return;
        }
        depth.reset();
        // a command whose queues all emptied (and left the registry) reads 0, not absent
        for (const command of sums.keys())
          if (this.depthCommands.size < MAX_DEPTH_COMMANDS) this.depthCommands.add(command);
        for (const command of new Set([...this.depthCommands, ...sums.keys()])) {
          for (const [type, value] of Object.entries(sums.get(command) ?? emptyDepth()))
            depth.set({ command, shard, type }, value);
        }
      },
    });
    this.depthErrors = new Counter({
      name: "codeq_queue_depth_read_errors_total",
      help: "Queue depth reads that failed (the store did not answer); a scrape whose read failed leaves codeq_queue_depth out and serves every other metric.",
      labelNames: ["shard"],
      registers,
      // after the depth gauge's read, which a scrape starts first: it shows its own failure
      collect: async () => {
        await this.depthScrape?.catch(() => undefined);
      },
    });
    this.depthErrors.inc({ shard }, 0);
    registerMapCacheMetrics(this.registry, "codeq_shard_", () => this.map(), { shard });
    const loop = new Gauge({
      name: "codeq_shard_event_loop_utilization",
      help: "Share of the last quarter second the worker's event loop was busy, 0-1 (the migration mover yields while it is high).",
      labelNames: ["shard"],
      registers,
      collect: () => {
        loop.set({ shard }, this.busy());
      },
    });
  }

  /** Reports the event loop's utilisation in its gauge. */
  followLoad(busy: () => number): void {
    this.busy = busy;
  }

  /** Reports the shard map the worker follows in the map gauges. */
  followMap(view: () => MapCacheView): void {
    this.map = view;
  }

  /**
   * Tasks per state summed per command over every queue on the shard (one stats read
   * each, STATS_CHUNK at a time): the depth gauge and GetShardStatus. RemoveShard
   * relies on it, so no queue may be left out. Callers while a read runs share it (two
   * Prometheus replicas scraping at once cost one read, not two), unless `fresh`: a
   * read of its own then, begun now, sees every task stored before it.
   */
  depthByCommand(fresh = false): Promise<Map<string, Depth>> {
    if (fresh) return this.readDepth();
    if (this.depthRead) return this.depthRead;
    const read: Promise<Map<string, Depth>> = this.readDepth()
      .catch((err: unknown) => {
        if (this.depthGivenUp !== read) this.depthErrors.inc({ shard: this.shard });
        throw err;
      })
      .finally(() => (this.depthRead = undefined));
    this.depthRead = read;
    return read;
  }

  /**
   * The depth read as a scrape waits for it: at most depthScrapeMs, a read that takes
   * longer counting as failed (once); the read goes on, and the next scrape shares it.
   */
  private depthForScrape(): Promise<Map<string, Depth>> {
    const read = this.depthByCommand();
    this.depthScrape = withTimeout(read, this.depthScrapeMs, "the queue depth read").catch(
      (err: unknown) => {
        // given up on while it still runs (a read that failed counted itself)
        if (this.depthRead === read && this.depthGivenUp !== read) {
          this.depthGivenUp = read;
          this.depthErrors.inc({ shard: this.shard });
        }
        throw err;
      },
    );
    return this.depthScrape;
  }

  private async readDepth(): Promise<Map<string, Depth>> {
    const queues = await this.engine.queues();
    const sums = new Map<string, Depth>();
    for (let i = 0; i < queues.length; i += STATS_CHUNK) {
      const chunk = queues.slice(i, i + STATS_CHUNK);
      const stats = await Promise.all(chunk.map((q) => this.engine.stats(q)));
      stats.forEach((s, j) => {
        const command = chunk[j]!.command;
        const sum = sums.get(command) ?? emptyDepth();
        sum.ready += s.ready;
        sum.scheduled += s.scheduled;
        sum.leased += s.leased;
        sum.dead += s.dead;
        sum.completed += s.completed;
        sum.moving += s.moving;
        sums.set(command, sum);
      });
    }
    return sums;
  }

  /** LeaseStreams open now. */
  async streamsOpen(): Promise<number> {
    return (await this.openStreams.get()).values[0]?.value ?? 0;
  }

  /**
   * Times an engine operation. A failure of the store (away, or a script error) is
   * counted, and logged (`FailureLog`); the engine refusing the call (the caller's
   * input, an `EngineError`) is neither.
   */
  async time<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    const end = this.operation.startTimer({ shard: this.shard, operation });
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof EngineError)) {
        this.operationFailures.inc({ shard: this.shard, operation });
        this.failures?.failed(operation, err);
      }
      throw err;
    } finally {
      end();
    }
  }

  /** Serves GET /metrics on `listen` (host:port); resolves with the port. */
  serve(listen: string): Promise<MetricsServer> {
    return serveMetrics(this.registry, listen);
  }
}
