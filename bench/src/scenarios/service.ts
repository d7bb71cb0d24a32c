import { spawn, type ChildProcess } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import {
  createChannel,
  createClient,
  type ChannelCredentials,
  type ChannelOptions,
} from "nice-grpc";
import { serviceArgs, ServiceProcess } from "@codeq/local-cluster";

/** How a client reaches a service that serves TLS. */
export interface ClientTls {
  readonly credentials: ChannelCredentials;
  /** e.g. the server name to check. */
  readonly channelOptions?: ChannelOptions;
}

/** A service process a scenario started, stopped by its PID. */
export interface BenchService {
  readonly name: string;
  /** Undefined once it has exited. */
  readonly pid: number | undefined;
  stop(): Promise<unknown>;
}

/**
 * grpc.health.v1.Health/Check with the empty request (the whole server), answering
 * whether it is SERVING. Written out rather than taken from nice-grpc-server-health
 * (not a dependency of the bench): the reply is one enum field, and SERVING (1) is the
 * two bytes 08 01.
 */
const HealthCheck = {
  check: {
    path: "/grpc.health.v1.Health/Check",
    requestStream: false,
    responseStream: false,
    requestSerialize: () => new Uint8Array(0),
    requestDeserialize: () => ({}),
    responseSerialize: () => new Uint8Array([0x08, 0x01]),
    responseDeserialize: (bytes: Uint8Array) => ({
      serving: bytes.length === 2 && bytes[0] === 0x08 && bytes[1] === 0x01,
    }),
    options: {},
  },
} as const;

/**
 * Starts a shard worker or router (its built entry) with `env` and waits until its
 * gRPC health check says SERVING, as `ServiceProcess` does. With `tls` the check goes
 * over TLS: `ServiceProcess` checks in plaintext, which a TLS port never answers, so
 * it cannot start a service that serves TLS.
 */
export async function startService(
  name: string,
  service: "shard" | "router",
  address: string,
  env: Record<string, string>,
  tls?: ClientTls,
): Promise<BenchService> {
  if (tls === undefined) return ServiceProcess.start(name, service, address, env);
  const childEnv = { ...process.env, ...env };
  const child = spawn(process.execPath, serviceArgs(service, childEnv), {
    env: childEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const keep = (chunk: Buffer) => (output = (output + chunk.toString("utf8")).slice(-20_000));
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const proc: BenchService = {
    name,
    get pid() {
      return child.exitCode === null && child.signalCode === null ? child.pid : undefined;
    },
    stop: () => stopChild(child, exited),
  };
  try {
    await waitServing(child, address, tls);
  } catch (err) {
    await proc.stop();
    throw new Error(`${name} did not become healthy: ${(err as Error).message}\n${output}`);
  }
  return proc;
}

/** SIGTERM (a graceful shutdown), then SIGKILL after 15 s. */
async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

async function waitServing(child: ChildProcess, address: string, tls: ClientTls): Promise<void> {
  const deadline = Date.now() + 15_000;
  const channel = createChannel(address, tls.credentials, tls.channelOptions);
  const health = createClient(HealthCheck, channel);
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}`);
      try {
        const res = await health.check({}, { signal: AbortSignal.timeout(1_000) });
        if (res.serving) return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
      }
      await sleep(100);
    }
  } finally {
    channel.close();
  }
}
