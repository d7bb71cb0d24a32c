import * as http from "node:http";
import { ServerError, Status, type ServerMiddleware } from "nice-grpc";
import { Counter, Histogram, type Registry } from "prom-client";

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
      const address = server.address();
      resolve({
        port: typeof address === "object" && address ? address.port : port,
        close: () => new Promise((r) => server.close(() => r())),
      });
    });
  });
}
