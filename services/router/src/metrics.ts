import { Counter, Gauge, Registry } from "prom-client";
import {
  collectProcessMetrics,
  registerMapCacheMetrics,
  RpcMetrics,
  serveMetrics,
  type MetricsServer,
} from "@codeq/server-kit";
import type { MapCache } from "@codeq/shardmap";
import type { ShardPool } from "./shard-pool";

const BREAKER_VALUE = { closed: 0, "half-open": 1, open: 2 } as const;

/**
 * Prometheus metrics of a router (SPEC §6): codeq_rpc_requests_total{method,code},
 * codeq_rpc_duration_seconds{method}, codeq_router_map_version,
 * codeq_router_map_stale, codeq_router_map_announcements, codeq_router_map_reads_total,
 * codeq_router_map_refreshes_total,
 * codeq_router_map_refresh_errors_total, codeq_router_shard_breaker_state{shard},
 * codeq_shard_available{shard} (the breaker closed),
 * codeq_router_fenced_retries_total, codeq_router_lease_streams_open,
 * codeq_router_forwarded_total{shard,call,path}, and the process metrics under
 * codeq_router_process_.
 */
export class RouterMetrics {
  readonly registry = new Registry();
  readonly rpc: RpcMetrics;
  readonly fencedRetries: Counter;
  readonly openStreams: Gauge;
  readonly forwarded: Counter<"shard" | "call" | "path">;

  constructor(cache: MapCache, pool: ShardPool) {
    const registers = [this.registry];
    collectProcessMetrics(this.registry, "codeq_router_process_");
    this.rpc = new RpcMetrics(this.registry);
    this.fencedRetries = new Counter({
      name: "codeq_router_fenced_retries_total",
      help: "Enqueues a shard refused as not its queue's owner, re-sent after a map refresh.",
      registers,
    });
    this.openStreams = new Gauge({
      name: "codeq_router_lease_streams_open",
      help: "Client LeaseStreams open on this router.",
      registers,
    });
    this.forwarded = new Counter({
      name: "codeq_router_forwarded_total",
      help: "Calls forwarded to shard workers that may go on a Forward stream, by shard, call (enqueue, ack, nack, extend, lease) and way: path=stream (a message on a Forward stream), path=call (a call of its own: a Lease that waits, a call too large to share a stream, or a shard worker without Forward) or path=refused (refused before it was sent: the stream was closed or held forwardMaxPending calls).",
      labelNames: ["shard", "call", "path"],
      registers,
    });
    registerMapCacheMetrics(this.registry, "codeq_router_", () => cache.status());
    const breaker = new Gauge({
      name: "codeq_router_shard_breaker_state",
      help: "Circuit breaker per shard: 0 closed, 1 half-open, 2 open.",
      labelNames: ["shard"],
      registers,
      collect: () => {
        breaker.reset();
        for (const conn of pool.all())
          breaker.set({ shard: conn.id }, BREAKER_VALUE[conn.breakerState]);
      },
    });
    // the router's side of SPEC §6's gauge: a shard worker's own says whether its store
    // answers, and goes silent, not 0, when the worker itself is gone
    const available = new Gauge({
      name: "codeq_shard_available",
      help: "1 while this router's circuit breaker to the shard is closed (its calls go through), 0 while it is open or half-open.",
      labelNames: ["shard"],
      registers,
      collect: () => {
        available.reset();
        for (const conn of pool.all())
          available.set({ shard: conn.id }, conn.breakerState === "closed" ? 1 : 0);
      },
    });
  }

  serve(listen: string): Promise<MetricsServer> {
    return serveMetrics(this.registry, listen);
  }
}
