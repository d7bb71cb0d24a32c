import { AsyncResource } from "node:async_hooks";
import * as os from "node:os";
import type { Redis } from "ioredis";
import { leanBind } from "@codeq/common";
import { serviceNodeFlags } from "@codeq/local-cluster";
import { measureRoundTrip, type RoundTrip } from "./round-trip";

/** Where the numbers were taken: results from different machines do not compare. */
export interface Environment {
  readonly node: string;
  /** The bench process's own node flags: its GC settings shape the latency it measures. */
  readonly benchNodeFlags: readonly string[];
  /** The flags the services it starts run with (SERVICE_NODE_FLAGS unless overridden). */
  readonly serviceNodeFlags: readonly string[];
  /**
   * Whether the bench and its forked clients run with `leanBind` (packages/common
   * async-bind.ts), as the services do: false on a Node whose own bind needs no fix.
   */
  readonly leanAsyncBind: boolean;
  readonly redisServer: string;
  readonly cpus: number;
  readonly cpuModel: string;
  readonly platform: string;
  /** 1-minute load average when the run started: other work on the machine skews results. */
  readonly loadAverage1m: number;
  /** What a paced loopback round trip between two processes costs here (see round-trip.ts). */
  readonly roundTrip: RoundTrip;
}

/** One field of an INFO reply, e.g. `redis_version`. */
export function infoField(info: string, field: string): string | undefined {
  return new RegExp(`^${field}:(.*)$`, "m").exec(info)?.[1]?.trim();
}

/** The redis-server's CPU seconds so far (user + system): how busy the server was. */
export async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info("cpu");
  return Number(infoField(info, "used_cpu_user")) + Number(infoField(info, "used_cpu_sys"));
}

export async function environment(redis: Redis): Promise<Environment> {
  const cpus = os.cpus();
  return {
    node: process.version,
    benchNodeFlags: process.execArgv,
    serviceNodeFlags: serviceNodeFlags(),
    leanAsyncBind: AsyncResource.prototype.bind === leanBind,
    redisServer: infoField(await redis.info("server"), "redis_version") ?? "unknown",
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? "unknown",
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    loadAverage1m: Number(os.loadavg()[0]!.toFixed(2)),
    roundTrip: await measureRoundTrip(),
  };
}
