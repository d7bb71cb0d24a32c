import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { createChannel, createClient, type ChannelCredentials } from "nice-grpc";
import { HealthDefinition } from "nice-grpc-server-health";
import { trackChild, untrackChild } from "@codeq/testing";

/** The repository root, from src/ or dist/ of this package. */
export const REPO_ROOT = path.resolve(__dirname, "..", "..", "..");

/** The built entry point of a service (`npm run build` makes it). */
export function serviceEntry(service: "shard" | "router"): string {
  const entry = path.join(REPO_ROOT, "services", service, "dist", "main.js");
  if (!fs.existsSync(entry)) {
    throw new Error(`${entry} is missing: run 'npm run build' first`);
  }
  return entry;
}

/**
 * The V8 settings a codeQ service runs with (deploy/ passes the same). A service
 * allocates a few KB per task, nearly all of it garbage within milliseconds, and
 * with V8's defaults it ran a full GC every 1–3 s at moderate load, each a pause of
 * 5–15 ms that landed in the latency tail (docs/performance.md, "Garbage
 * collection settings"):
 *
 * - `--initial-old-space-size=256`: the old generation may reach 256 MB before the
 *   first full GC, and V8 keeps its limit near there afterwards: a full GC every
 *   tens of seconds instead of every second or two, for up to about 250 MB more
 *   memory per process.
 * - `--no-allocation-site-pretenuring`: V8 otherwise starts allocating per-message
 *   objects straight in the old generation once a burst of slow calls made their
 *   allocation sites look long-lived; that doubled how fast the old generation
 *   filled.
 * - `--max-semi-space-size=8`: a young generation half the default. A scavenge here
 *   costs about what was allocated since the last one (sweeping young ArrayBuffers,
 *   weak handles, the parallel phase's start), little of which survives, so more
 *   and smaller scavenges pause for less each: the shard worker at 13.5k tasks/s
 *   pauses 0.9 ms (p90 1.3–1.6) every 65 ms, against 1.6–2.1 ms (p90 2.8–3.8)
 *   every 245 ms at 32 MB, with the same CPU (docs/performance.md, session 11).
 *
 * `CODEQ_SERVICE_NODE_FLAGS` replaces them (space-separated; empty for V8's
 * defaults), e.g. to measure a change of settings side by side.
 */
export const SERVICE_NODE_FLAGS: readonly string[] = [
  "--initial-old-space-size=256",
  "--no-allocation-site-pretenuring",
  "--max-semi-space-size=8",
];

/** The flags services start with: `CODEQ_SERVICE_NODE_FLAGS` if set, else SERVICE_NODE_FLAGS. */
export function serviceNodeFlags(env: NodeJS.ProcessEnv = process.env): string[] {
  const override = env.CODEQ_SERVICE_NODE_FLAGS;
  if (override === undefined) return [...SERVICE_NODE_FLAGS];
  return override.split(/\s+/).filter((flag) => flag.length > 0);
}

/** The node arguments that start `service` with `env` (the child's environment). */
export function serviceArgs(service: "shard" | "router", env: NodeJS.ProcessEnv): string[] {
  return ["--enable-source-maps", ...serviceNodeFlags(env), serviceEntry(service)];
}

/** A codeQ service running as its own process, stopped by its PID. */
export class ServiceProcess {
  private readonly exited: Promise<number | null>;
  private output = "";

  private constructor(
    readonly name: string,
    readonly address: string,
    private readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => {
      child.once("exit", (code) => {
        if (child.pid !== undefined) untrackChild(child.pid);
        resolve(code);
      });
      // a spawn that fails (EAGAIN on a loaded machine) emits this instead, and an
      // 'error' with no listener would end the demo or test that started it
      child.once("error", (err) => {
        this.output += `\ncould not start: ${err.message}`;
        if (child.pid === undefined) resolve(null);
      });
    });
    if (child.pid !== undefined) trackChild(child.pid);
    const keep = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString("utf8")).slice(-20_000);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
  }

  /** Spawns `node <entry>` with `env` and waits until its gRPC health check says SERVING. */
  static async start(
    name: string,
    service: "shard" | "router",
    address: string,
    env: Record<string, string>,
    options: {
      /** How long it may take to serve. Default 15 s. */
      readyTimeoutMs?: number;
      /** How to reach its health service when it serves TLS. */
      credentials?: ChannelCredentials;
      /** In a process group of its own (RedisServerOptions.ownGroup says why). */
      ownGroup?: boolean;
    } = {},
  ): Promise<ServiceProcess> {
    const { readyTimeoutMs = 15_000, credentials, ownGroup = false } = options;
    const childEnv = { ...process.env, ...env };
    const child = spawn(process.execPath, serviceArgs(service, childEnv), {
      env: childEnv,
      stdio: ["ignore", "pipe", "pipe"],
      detached: ownGroup,
    });
    const proc = new ServiceProcess(name, address, child);
    try {
      await proc.waitHealthy(readyTimeoutMs, credentials);
    } catch (err) {
      await proc.stop(1_000);
      throw new Error(`${name} did not become healthy: ${(err as Error).message}\n${proc.output}`);
    }
    return proc;
  }

  /** Its PID while it runs; undefined once it exited or was killed. */
  get pid(): number | undefined {
    return this.running ? this.child.pid : undefined;
  }

  private get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The last 20 kB the process printed (its structured logs). */
  get logs(): string {
    return this.output;
  }

  /**
   * SIGTERM (a graceful shutdown), then SIGKILL after `graceMs`. How it ended: its
   * exit code (0 when its shutdown went through), or the signal that killed it;
   * undefined when it was not running.
   */
  async stop(graceMs = 15_000): Promise<number | NodeJS.Signals | undefined> {
    if (!this.running) return undefined;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
    return this.child.exitCode ?? this.child.signalCode ?? undefined;
  }

  /** SIGKILL: a crash. */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.child.kill("SIGKILL");
    await this.exited;
  }

  private async waitHealthy(timeoutMs: number, credentials?: ChannelCredentials): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const channel = createChannel(this.address, credentials);
    const health = createClient(HealthDefinition, channel);
    try {
      for (;;) {
        if (!this.running)
          throw new Error(`exited with ${this.child.exitCode ?? this.child.signalCode}`);
        try {
          const res = await health.check({ service: "" }, { signal: AbortSignal.timeout(1_000) });
          if (res.status === 1) return;
        } catch (err) {
          if (Date.now() > deadline) throw err;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      channel.close();
    }
  }
}
