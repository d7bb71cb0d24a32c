import * as http from "node:http";
import { ServerError, Status, type ServerMiddleware } from "nice-grpc";
import { collectDefaultMetrics, Counter, Gauge, Histogram, type Registry } from "prom-client";
import { observeGcPauses } from "@codeq/common";

/** prom-client's buckets for the GC histogram, s. */
const GC_BUCKETS = [0.001, 0.01, 0.1, 1, 2, 5];

/**
 * Node's process metrics under `prefix` (prom-client's defaults: CPU, memory, event-loop
 * lag, handles, heap spaces, GC), with the GC histogram
 * (`<prefix>nodejs_gc_duration_seconds{kind}`) counted by an observer of our own.
 * prom-client 15 reads only the first entry of each batch Node hands its observer, and
 * pauses that come together went uncounted: the pieces of a full GC (its marking start,
 * final pause and weak callbacks), or scavenges in one long turn of the loop (six
 * forced GCs in one turn counted as one). Its own observer keeps running into the
 * histogram removed here; nothing reads that. (Neither it nor prom-client's other
 * collectors can be stopped; one registry per process is what the services make.)
 */
export function collectProcessMetrics(registry: Registry, prefix: string): void {
  collectDefaultMetrics({ register: registry, prefix });
  const name = `${prefix}nodejs_gc_duration_seconds`;
  registry.removeSingleMetric(name);
  const pauses = new Histogram({
    name,
    help: "Garbage collection duration by kind, one of major, minor, incremental or weakcb.",
    labelNames: ["kind"],
    buckets: GC_BUCKETS,
    registers: [registry],
  });
  observeGcPauses((kind, ms) => pauses.observe({ kind }, ms / 1000));
}

/** The RPC metrics every codeQ service exports: counts by method and code, unary latency. */
export class RpcMetrics {
  readonly requests: Counter<"method" | "code">;
  readonly duration: Histogram<"method">;

  constructor(registry: Registry) {
    const registers = [registry];
    this.requests = new Counter({
      name: "codeq_rpc_requests_total",
      help: "RPCs served, by method and status code.",
      labelNames: ["method", "code"],
      registers,
    });
    this.duration = new Histogram({
      name: "codeq_rpc_duration_seconds",
      help: "Time to answer a unary RPC.",
      labelNames: ["method"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30],
      registers,
    });
  }

  /** Server middleware counting and timing every RPC by method and final status code. */
  middleware(): ServerMiddleware {
    const metrics = this;
    return async function* (call, context) {
      const method = call.method.path.split("/").pop() ?? call.method.path;
      const end =
        call.method.requestStream || call.method.responseStream
          ? undefined
          : metrics.duration.startTimer({ method });
      let code = Status.OK;
      try {
        return yield* call.next(call.request, context);
      } catch (err) {
        code = err instanceof ServerError ? err.code : Status.UNKNOWN;
        throw err;
      } finally {
        end?.();
        metrics.requests.inc({ method, code: Status[code] ?? String(code) });
      }
    };
  }
}

/** A running /metrics endpoint. */
export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Serves GET /metrics of `registry` on `listen` (host:port; port 0 picks one). */
export function serveMetrics(registry: Registry, listen: string): Promise<MetricsServer> {
  const at = listen.lastIndexOf(":");
  const host = listen.slice(0, at);
  const port = Number(listen.slice(at + 1));
  const server = http.createServer((req, res) => {
    if (req.url !== "/metrics") {
      res.writeHead(404).end();
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { "content-type": registry.contentType }).end(body),
      (err: unknown) => res.writeHead(500).end(String(err)),
    );
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      // once listening, an error is a failed accept (the process is out of file
      // descriptors, say): the scrape is refused, and the service goes on serving
      server.off("error", reject);
      server.on("error", () => undefined);
      const address = server.address();
      resolve({
        port: typeof address === "object" && address ? address.port : port,
        close: () => new Promise((r) => server.close(() => r())),
      });
    });
  });
}

/** The counters of a shard map cache (`MapCache.status().counters`). */
export interface MapCacheCounts {
  readonly hits: number;
  readonly refreshes: number;
  readonly errors: number;
}

/** What a shard map cache's metrics read at scrape time (`MapCache.status()`). */
export interface MapCacheView {
  /** The held version (0: none, a standalone shard worker). */
  readonly version: number;
  readonly stale: boolean;
  /** Announcements arrive now; undefined for a source without them (a file, none). */
  readonly announcements?: boolean;
  /** The cache's counters (none standalone). */
  readonly counters?: MapCacheCounts;
}

/**
 * A shard map cache as Prometheus metrics, read at scrape time: the gauges
 * `<prefix>map_version`, `<prefix>map_stale` and `<prefix>map_announcements`, and the
 * counters `<prefix>map_reads_total` (reads of the held map), `<prefix>map_refreshes_total`
 * (reads of the control store) and `<prefix>map_refresh_errors_total` (those that
 * failed; the last good map was kept). `labels` go on each (a shard worker's `shard`).
 */
export function registerMapCacheMetrics(
  registry: Registry,
  prefix: string,
  view: () => MapCacheView,
  labels: Record<string, string> = {},
): void {
  const labelNames = Object.keys(labels);
  const gauges: [string, string, (v: MapCacheView) => number | undefined][] = [
    [
      "map_version",
      "The shard map version held (0: none, a standalone shard worker).",
      (v) => v.version,
    ],
    [
      "map_stale",
      "1 while the shard map may be old: the control store does not answer, the last good map is served.",
      (v) => (v.stale ? 1 : 0),
    ],
    [
      "map_announcements",
      "1 while announcements of shard map changes arrive; 0 while the subscription is down and changes arrive by polling alone.",
      (v) => (v.announcements === undefined ? undefined : v.announcements ? 1 : 0),
    ],
  ];
  for (const [name, help, read] of gauges) {
    const gauge: Gauge = new Gauge({
      name: `${prefix}${name}`,
      help,
      labelNames,
      registers: [registry],
      collect: () => {
        const value = read(view());
        if (value === undefined) gauge.reset();
        else gauge.set(labels, value);
      },
    });
  }
  const kinds: [keyof MapCacheCounts, string, string][] = [
    ["hits", "map_reads_total", "Reads of the shard map held in the cache."],
    ["refreshes", "map_refreshes_total", "Reads of the shard map from the control store."],
    [
      "errors",
      "map_refresh_errors_total",
      "Reads of the shard map from the control store that failed; the last good map was kept.",
    ],
  ];
  for (const [kind, name, help] of kinds) {
    let seen = 0;
    const counter: Counter = new Counter({
      name: `${prefix}${name}`,
      help,
      labelNames,
      registers: [registry],
      collect: () => {
        const now = view().counters?.[kind] ?? 0;
        counter.inc(labels, Math.max(0, now - seen));
        seen = Math.max(seen, now);
      },
    });
  }
}
