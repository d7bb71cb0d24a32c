import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

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

/**
 * Where processes note the ports they were handed: one file per port, holding the PID
 * it went to. A port is handed to one live process only, so two test processes cannot
 * be given the same port between one's check and its bind, nor while a test has
 * stopped the server on it to start it again (a shard restarted on its address).
 */
const RESERVED = path.join(os.tmpdir(), "codeq-test-ports");

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
};

const mine = new Set<number>();
let cleanupHooked = false;

/** Sleeps `ms` without returning to the event loop (the lock is held for microseconds). */
const pause = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * Runs `fn` holding the reservations' lock (a directory: creating one is atomic). A
 * lock older than a second was left by a process that died holding it, and is broken.
 */
function locked<T>(fn: () => T): T {
  const lock = path.join(RESERVED, ".lock");
  fs.mkdirSync(RESERVED, { recursive: true });
  for (const deadline = Date.now() + 5_000; ; pause(1)) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      try {
        if (Date.now() - fs.statSync(lock).mtimeMs > 1_000) fs.rmdirSync(lock);
      } catch {
        // gone meanwhile
      }
      if (Date.now() > deadline) throw new Error(`${lock} held for 5 s`);
    }
  }
  try {
    return fn();
  } finally {
    fs.rmdirSync(lock);
  }
}

/** Notes `port` as this process's; false when a live process has it already. */
function reserve(port: number): boolean {
  const file = path.join(RESERVED, String(port));
  return locked(() => {
    if (fs.existsSync(file) && isAlive(Number(fs.readFileSync(file, "utf8")))) return false;
    fs.writeFileSync(file, String(process.pid)); // new, or left by a process that is gone
    mine.add(port);
    if (!cleanupHooked) {
      cleanupHooked = true;
      process.once("exit", () => {
        for (const p of mine) fs.rmSync(path.join(RESERVED, String(p)), { force: true });
      });
    }
    return true;
  });
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago and that no other live process
 * (nor this one before) was handed (bind to it soon).
 */
export async function freePort(): Promise<number> {
  const start = ephemeralStart();
  if (start !== undefined) {
    for (let i = 0; i < ATTEMPTS; i++) {
      const candidate = start - 1 - Math.floor(Math.random() * SPAN);
      if (!reserve(candidate)) continue;
      const port = await tryPort(candidate);
      if (port !== undefined) return port;
    }
  }
  const port = await tryPort(0);
  if (port === undefined) throw new Error("no free port on 127.0.0.1");
  return port;
}
