import * as fs from "node:fs";
import * as net from "node:net";

/**
 * Ports handed out are below the kernel's ephemeral range (Linux: 32768 and up by
 * default), from this many ports under it. A port from that range, free a moment
 * ago, can be taken as the local port of any outgoing connection (a test's client
 * to Redis, a router's to a shard) before the server meant for it binds: that was
 * an EADDRINUSE now and then under a parallel test run. Below the range only
 * another listener can take it.
 */
const SPAN = 12_000;
const ATTEMPTS = 50;
/**
 * Jest's parallel workers (JEST_WORKER_ID 1, 2, …) each draw from a slice of the span
 * of their own (1,500 ports), so two workers never meet on a port unless there are
 * more workers than slices. A process outside jest draws from the whole span.
 */
const SLICES = 8;

/** Where in the span this process draws: [offset, offset + size) under the range. */
function drawSlice(): { offset: number; size: number } {
  const worker = Number(process.env.JEST_WORKER_ID);
  if (!Number.isInteger(worker) || worker < 1) return { offset: 0, size: SPAN };
  const size = Math.floor(SPAN / SLICES);
  return { offset: ((worker - 1) % SLICES) * size, size };
}

/** The first port of the kernel's ephemeral range, or undefined where it cannot be read. */
function ephemeralStart(): number | undefined {
  try {
    const [low] = fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").split(/\s+/);
    const start = Number(low);
    return Number.isInteger(start) && start > 1024 + SPAN ? start : undefined;
  } catch {
    return undefined;
  }
}

/** Listens on `port` (0: any) of 127.0.0.1 and closes again; the port, or undefined if taken. */
export function tryPort(port: number): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", (err: NodeJS.ErrnoException) =>
      err.code === "EADDRINUSE" || err.code === "EACCES" ? resolve(undefined) : reject(err),
    );
    server.listen(port, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        resolve(address && typeof address === "object" ? address.port : undefined),
      );
    });
  });
}

/**
 * Ports this process was handed. A port is handed to it once: a test that takes two
 * ports before it binds either (a cluster's shard addresses, written into its map
 * first), or that stops a server to start it again on the same address, could
 * otherwise be handed the same port twice (an EADDRINUSE in CI). Jest's workers draw
 * from slices of their own (drawSlice).
 */
const handedOut = new Set<number>();

/** A TCP port on 127.0.0.1 that was free a moment ago and not handed to this process before (bind to it soon). */
export async function freePort(): Promise<number> {
  const start = ephemeralStart();
  if (start !== undefined) {
    // this worker's slice first, then the whole span
    for (const { offset, size } of [drawSlice(), { offset: 0, size: SPAN }]) {
      for (let i = 0; i < ATTEMPTS; i++) {
        const candidate = start - 1 - offset - Math.floor(Math.random() * size);
        if (handedOut.has(candidate)) continue;
        const port = await tryPort(candidate);
        if (port === undefined) continue;
        handedOut.add(port);
        return port;
      }
    }
  }
  // the kernel's choice, never one handed out before
  for (let i = 0; i < ATTEMPTS; i++) {
    const port = await tryPort(0);
    if (port === undefined || handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error("no free port on 127.0.0.1");
}
