import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { createChannel, createClient } from "nice-grpc";
import { HealthDefinition } from "nice-grpc-server-health";

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

/** A codeQ service running as its own process, stopped by its PID. */
export class ServiceProcess {
  private readonly exited: Promise<number | null>;
  private output = "";

  private constructor(
    readonly name: string,
    readonly address: string,
    private readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
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
    readyTimeoutMs = 15_000,
  ): Promise<ServiceProcess> {
    const child = spawn(process.execPath, ["--enable-source-maps", serviceEntry(service)], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const proc = new ServiceProcess(name, address, child);
    try {
      await proc.waitHealthy(readyTimeoutMs);
    } catch (err) {
      await proc.stop(1_000);
      throw new Error(`${name} did not become healthy: ${(err as Error).message}\n${proc.output}`);
    }
    return proc;
  }

  get pid(): number | undefined {
    return this.child.exitCode === null ? this.child.pid : undefined;
  }

  /** The last 20 kB the process printed (its structured logs). */
  get logs(): string {
    return this.output;
  }

  /** SIGTERM (a graceful shutdown), then SIGKILL after `graceMs`. */
  async stop(graceMs = 15_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** SIGKILL: a crash. */
  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGKILL");
    await this.exited;
  }

  private async waitHealthy(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const channel = createChannel(this.address);
    const health = createClient(HealthDefinition, channel);
    try {
      for (;;) {
        if (this.child.exitCode !== null) throw new Error(`exited with ${this.child.exitCode}`);
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
