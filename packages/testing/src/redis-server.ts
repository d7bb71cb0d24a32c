import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { Redis } from "ioredis";
import { freePort } from "./free-port";
import { trackChild, untrackChild } from "./process-registry";

/** Names an external Redis-protocol server (e.g. a real KVRocks) to run the suite against. */
export const EXTERNAL_REDIS_ENV = "CODEQ_TEST_REDIS_URL";
/** Overrides the redis-server binary used for spawned servers. */
export const REDIS_BIN_ENV = "CODEQ_REDIS_SERVER_BIN";

export interface RedisServerOptions {
  /** Keep data on disk (append-only file) so `restart()` brings it back. Default false. */
  persistent?: boolean;
  /** Never use the external server, even when CODEQ_TEST_REDIS_URL is set (tests that kill the server). */
  spawnOnly?: boolean;
  /**
   * Spawn it in a process group of its own, so that a terminal's Ctrl-C (sent to the
   * whole foreground group) reaches only the process that started it, which stops it
   * in its turn (the local cluster's demo). A crash of that process leaves it to the
   * exit hook's kill by PID, as any tracked server.
   */
  ownGroup?: boolean;
  /**
   * Serve TLS with this certificate on a second port (`tlsUrl`), beside the plaintext
   * one (`url`, `client()`). Always a spawned server.
   */
  tls?: { certFile: string; keyFile: string };
}

/**
 * A Redis-protocol server for one test: a redis-server this process spawned on a free
 * port with its own data directory (stopped by PID), or the external server named by
 * CODEQ_TEST_REDIS_URL, shared and kept apart by a unique key prefix.
 */
export class RedisServer {
  /** Unique per server handle; every key a test writes should start with it. */
  readonly keyPrefix = `codeq-test-${randomBytes(6).toString("hex")}`;
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;

  private constructor(
    readonly host: string,
    readonly port: number,
    /** The data directory of a spawned server; undefined for an external one. */
    readonly dataDir: string | undefined,
    private readonly password: string | undefined,
    private readonly persistent: boolean,
    private readonly tls?: { certFile: string; keyFile: string; port: number },
    private readonly ownGroup = false,
  ) {}

  /** Starts (or attaches to) a server and waits until it answers PING. */
  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    const external = process.env[EXTERNAL_REDIS_ENV];
    if (external && !options.spawnOnly && !options.tls) {
      const url = new URL(external);
      const server = new RedisServer(
        url.hostname,
        Number(url.port || 6379),
        undefined,
        url.password ? decodeURIComponent(url.password) : undefined,
        false,
      );
      await server.waitReady(10_000);
      return server;
    }
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "codeq-redis-"));
    let lastError: unknown;
    // The free port can be taken between probing and binding: try a few.
    for (let attempt = 0; attempt < 5; attempt++) {
      const server = new RedisServer(
        "127.0.0.1",
        await freePort(),
        dataDir,
        undefined,
        !!options.persistent,
        options.tls && { ...options.tls, port: await freePort() },
        !!options.ownGroup,
      );
      try {
        await server.spawn();
        return server;
      } catch (err) {
        lastError = err;
        await server.stopProcess();
      }
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw new Error(`could not start redis-server: ${String(lastError)}`);
  }

  /** True when this handle spawned its own redis-server. */
  get spawned(): boolean {
    return this.dataDir !== undefined;
  }

  /** The PID of the spawned server, while it runs. */
  /** Its PID while it runs; undefined once it exited or was killed (or for an external one). */
  get pid(): number | undefined {
    const child = this.child;
    return child?.exitCode === null && child.signalCode === null ? child.pid : undefined;
  }

  get url(): string {
    const auth = this.password ? `:${encodeURIComponent(this.password)}@` : "";
    return `redis://${auth}${this.host}:${this.port}`;
  }

  /** The TLS address of a server started with `tls`: rediss://host:port. */
  get tlsUrl(): string {
    if (!this.tls) throw new Error("this redis-server was started without tls");
    return `rediss://${this.host}:${this.tls.port}`;
  }

  /** A new client connection; the caller closes it. */
  client(): Redis {
    return new Redis({
      host: this.host,
      port: this.port,
      password: this.password,
      protocol: 2,
      maxRetriesPerRequest: 1,
      lazyConnect: false,
    });
  }

  /** How many clients are connected to the server, not counting the one asking. */
  async connectedClients(): Promise<number> {
    const admin = this.client();
    try {
      const list = (await admin.client("LIST")) as string;
      return list.trim().split("\n").length - 1;
    } finally {
      admin.disconnect();
    }
  }

  /** Stops a spawned server (SIGTERM, then SIGKILL) and removes its data; clears the prefix on an external one. */
  async stop(): Promise<void> {
    if (!this.spawned) {
      await this.deletePrefixedKeys();
      return;
    }
    await this.stopProcess();
    fs.rmSync(this.dataDir!, { recursive: true, force: true });
  }

  /** SIGKILLs a spawned server, keeping its data directory (a crash). */
  async kill(): Promise<void> {
    this.requireSpawned("kill");
    await this.stopProcess("SIGKILL");
  }

  /** Stops and starts a spawned server on the same port and data directory. */
  async restart(): Promise<void> {
    this.requireSpawned("restart");
    await this.stopProcess();
    await this.spawn();
  }

  private requireSpawned(what: string): void {
    if (!this.spawned) throw new Error(`cannot ${what} an external server (${EXTERNAL_REDIS_ENV})`);
  }

  private async spawn(): Promise<void> {
    const bin = process.env[REDIS_BIN_ENV] ?? "redis-server";
    const args = [
      "--port", String(this.port),
      "--bind", "127.0.0.1",
      "--dir", this.dataDir!,
      "--logfile", "redis.log",
      "--save", "",
      "--appendonly", this.persistent ? "yes" : "no",
      "--appendfsync", "always",
      "--daemonize", "no",
      "--protected-mode", "no",
      ...(this.tls ? [
        "--tls-port", String(this.tls.port),
        "--tls-cert-file", this.tls.certFile,
        "--tls-key-file", this.tls.keyFile,
        "--tls-auth-clients", "no",
      ] : []),
    ]; // prettier-ignore
    const child = spawn(bin, args, { stdio: "ignore", detached: this.ownGroup });
    this.child = child;
    let failure: Error | undefined;
    this.exited = new Promise((resolve) => {
      child.once("error", (err) => {
        failure = new Error(`${bin}: ${err.message} (install it with scripts/ensure-deps.sh)`);
        resolve();
      });
      child.once("exit", (code) => {
        if (child.pid !== undefined) untrackChild(child.pid); // its PID may be reused
        failure ??= new Error(`${bin} exited with ${code}: ${this.log()}`);
        resolve();
      });
    });
    if (child.pid !== undefined) trackChild(child.pid, this.dataDir);
    await this.waitReady(10_000, () => failure);
  }

  private async stopProcess(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const child = this.child;
    if (!child || child.pid === undefined) return;
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await this.exited;
      clearTimeout(timer);
    }
    untrackChild(child.pid);
    this.child = undefined;
  }

  private log(): string {
    try {
      return fs.readFileSync(path.join(this.dataDir!, "redis.log"), "utf8").slice(-2000);
    } catch {
      return "(no log)";
    }
  }

  /** Polls PING until it answers; gives up early when `failed()` reports the process died. */
  private async waitReady(
    timeoutMs: number,
    failed: () => Error | undefined = () => undefined,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const failure = failed();
      if (failure) throw failure;
      try {
        await pingOnce(this.host, this.port, this.password);
        return;
      } catch (err) {
        if (Date.now() > deadline) {
          throw new Error(`redis at ${this.host}:${this.port} not ready: ${String(err)}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  private async deletePrefixedKeys(): Promise<void> {
    const redis = this.client();
    try {
      let cursor = "0";
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", `${this.keyPrefix}*`, "COUNT", 1000);
        cursor = next;
        if (keys.length > 0) await redis.del(...keys);
      } while (cursor !== "0");
    } finally {
      redis.disconnect();
    }
  }
}

/** One PING over a raw socket: resolves on +PONG. (A client library would leave retry timers behind.) */
function pingOnce(host: string, port: number, password: string | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    let reply = "";
    const done = (err?: Error) => {
      socket.destroy();
      if (err) reject(err);
      else resolve();
    };
    socket.setTimeout(1_000, () => done(new Error("ping timed out")));
    socket.once("error", done);
    socket.on("data", (chunk) => {
      reply += chunk.toString("utf8");
      if (reply.includes("+PONG")) done();
      else if (reply.includes("-")) done(new Error(reply.trim()));
    });
    socket.once("connect", () => {
      const auth = password ? `AUTH ${JSON.stringify(password)}\r\n` : "";
      socket.write(`${auth}PING\r\n`);
    });
  });
}
