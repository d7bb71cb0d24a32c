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
function tryPort(port: number): Promise<number | undefined> {
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

/** A TCP port on 127.0.0.1 that was free a moment ago (bind to it soon, and retry if taken). */
export async function freePort(): Promise<number> {
  const start = ephemeralStart();
  if (start !== undefined) {
    for (let i = 0; i < ATTEMPTS; i++) {
      const port = await tryPort(start - 1 - Math.floor(Math.random() * SPAN));
      if (port !== undefined) return port;
    }
  }
  const port = await tryPort(0);
  if (port === undefined) throw new Error("no free port on 127.0.0.1");
  return port;
}
