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
 * otherwise be handed the same port twice (an EADDRINUSE in CI). Other processes draw
 * from the span at random too; two of them meet on a port about once in 12,000 draws
 * made while the other's port is still unbound (a CI run has one jest worker).
 */
const handedOut = new Set<number>();

/** A TCP port on 127.0.0.1 that was free a moment ago and not handed to this process before (bind to it soon). */
export async function freePort(): Promise<number> {
  const start = ephemeralStart();
  if (start !== undefined) {
    for (let i = 0; i < ATTEMPTS; i++) {
      const candidate = start - 1 - Math.floor(Math.random() * SPAN);
      if (handedOut.has(candidate)) continue;
      const port = await tryPort(candidate);
      if (port === undefined) continue;
      handedOut.add(port);
      return port;
    }
  }
  const port = await tryPort(0);
  if (port === undefined) throw new Error("no free port on 127.0.0.1");
  handedOut.add(port);
  return port;
}
