import { freePort, RedisServer } from "@codeq/testing";
import { ServiceProcess } from "./service-process";

export interface LocalClusterOptions {
  /** Number of shards, each a redis-server and a shard worker. Default 3. */
  shards?: number;
  /** Number of routers. Default 1. */
  routers?: number;
  /** Extra environment for every service process. */
  env?: Record<string, string>;
}

/** One shard: its store and its worker. */
export interface LocalShard {
  readonly id: string;
  readonly store: RedisServer;
  readonly worker: ServiceProcess;
}

/** A running local cluster of real processes on loopback, each stopped by its PID. */
export interface LocalCluster {
  readonly control: RedisServer;
  readonly shards: readonly LocalShard[];
  readonly routers: readonly ServiceProcess[];
  stop(): Promise<void>;
}

/** Starts a control store, N shards (store + worker) and the routers; waits until every one is healthy. */
export async function startLocalCluster(options: LocalClusterOptions = {}): Promise<LocalCluster> {
  const shardCount = options.shards ?? 3;
  const routerCount = options.routers ?? 1;
  const env = { CODEQ_LOG_LEVEL: "warn", ...options.env };
  const started: Array<{ stop(): Promise<void> }> = [];
  const stopAll = async () => {
    for (const part of started.reverse()) await part.stop().catch(() => undefined);
  };
  try {
    const control = await RedisServer.start({ spawnOnly: true, persistent: true });
    started.push(control);
    const shards: LocalShard[] = [];
    for (let i = 0; i < shardCount; i++) {
      const id = String.fromCharCode(97 + i); // a, b, c ...
      const store = await RedisServer.start({ spawnOnly: true, persistent: true });
      started.push(store);
      const address = `127.0.0.1:${await freePort()}`;
      const worker = await ServiceProcess.start(`shard-${id}`, "shard", address, {
        // a local cluster is a development setup: callers state their tenant
        CODEQ_SHARD_DEV_IDENTITY: "true",
        CODEQ_SHARD_METRICS_LISTEN: `127.0.0.1:${await freePort()}`,
        ...env,
        CODEQ_SHARD_ID: id,
        CODEQ_SHARD_LISTEN: address,
        CODEQ_SHARD_REDIS_URL: store.url,
      });
      started.push(worker);
      shards.push({ id, store, worker });
    }
    const routers: ServiceProcess[] = [];
    for (let i = 0; i < routerCount; i++) {
      const address = `127.0.0.1:${await freePort()}`;
      const router = await ServiceProcess.start(`router-${i + 1}`, "router", address, {
        ...env,
        CODEQ_ROUTER_LISTEN: address,
        CODEQ_ROUTER_CONTROL_URL: control.url,
      });
      started.push(router);
      routers.push(router);
    }
    return { control, shards, routers, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
