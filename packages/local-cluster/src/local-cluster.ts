import { randomBytes } from "node:crypto";
import type { ChannelCredentials, Metadata } from "nice-grpc";
import { identityMetadata, type Role } from "@codeq/server-kit";
import { RedisMapSource, type ShardMapDraft } from "@codeq/shardmap";
import { freePort, RedisServer } from "@codeq/testing";
import { ServiceProcess } from "./service-process";

export interface LocalClusterOptions {
  /** Number of shards, each a redis-server and a shard worker. Default 3. */
  shards?: number;
  /** Number of routers. Default 1. */
  routers?: number;
  /** Command → shard id mappings of the initial map (the default shard is "a"). */
  commands?: Record<string, string>;
  /** Extra environment for every service process. */
  env?: Record<string, string>;
  /** How the launcher reaches the routers' health service, when `env` has them serve TLS. */
  routerCredentials?: ChannelCredentials;
  /**
   * Every process in a process group of its own (RedisServerOptions.ownGroup): a
   * terminal's Ctrl-C then reaches only the launcher, which stops them in order, by
   * PID (the demo). Otherwise the terminal signals them all at once: the stores stop
   * under workers still draining, and the launcher's own stop is their second signal.
   */
  ownGroups?: boolean;
}

/** One shard: its store and its worker. */
export interface LocalShard {
  readonly id: string;
  readonly address: string;
  readonly store: RedisServer;
  /** The running worker process (replaced by restartWorker). */
  readonly worker: ServiceProcess;
  /** Starts the worker again on the same address and store (after a stop or kill). */
  restartWorker(): Promise<ServiceProcess>;
}

/** A running local cluster of real processes on loopback, each stopped by its PID. */
export interface LocalCluster {
  readonly control: RedisServer;
  readonly shards: readonly LocalShard[];
  readonly routers: readonly ServiceProcess[];
  /** A source on the control store's shard map (compare-and-set, audit); the caller closes it. */
  mapSource(): RedisMapSource;
  /**
   * Metadata for calling a shard worker directly as a router would: the cluster's
   * router secret and the stated identity (tests and operators' tools only).
   */
  shardMetadata(tenant?: string, roles?: string): Metadata;
  /**
   * Stops every process by its PID, routers first, then the workers, then the stores;
   * says which service did not stop cleanly (its exit code or signal), if any.
   */
  stop(): Promise<string[]>;
}

/**
 * Environment every local shard worker and router runs with. Routers take the
 * caller's stated tenant (development identity, until credentials are configured)
 * and state it to shard workers with the cluster's secret; shard workers accept
 * identity only from routers. The map is polled often so a lost announcement shows.
 */
function clusterEnv(role: "SHARD" | "ROUTER", secret: string): Record<string, string> {
  return role === "SHARD"
    ? { CODEQ_SHARD_ROUTER_SECRET: secret, CODEQ_SHARD_MAP_POLL_MS: "1000" }
    : {
        CODEQ_ROUTER_DEV_IDENTITY: "true",
        CODEQ_ROUTER_SHARD_SECRET: secret,
        CODEQ_ROUTER_MAP_POLL_MS: "1000",
      };
}

/**
 * Starts a control store holding an initial shard map (shards a, b, c … with the
 * default shard a), N shards (store + worker following the map) and the routers;
 * waits until every one is healthy.
 */
export async function startLocalCluster(options: LocalClusterOptions = {}): Promise<LocalCluster> {
  const shardCount = options.shards ?? 3;
  const routerCount = options.routers ?? 1;
  const env = { CODEQ_LOG_LEVEL: "warn", ...options.env };
  const started: Array<RedisServer | ServiceProcess> = [];
  // newest first: routers, then workers, then stores; what did not stop cleanly
  const stopAll = async () => {
    const unclean: string[] = [];
    for (const part of started.reverse()) {
      const ended = await part.stop().catch(() => undefined);
      if (part instanceof ServiceProcess && ended !== undefined && ended !== 0)
        unclean.push(`${part.name} exited with ${ended}`);
    }
    return unclean;
  };
  try {
    const ownGroup = !!options.ownGroups;
    const control = await RedisServer.start({ spawnOnly: true, persistent: true, ownGroup });
    started.push(control);
    const mapSource = () => new RedisMapSource({ url: control.url });
    const secret = randomBytes(24).toString("base64url"); // 32 characters
    const ids = Array.from({ length: shardCount }, (_, i) => String.fromCharCode(97 + i));
    const addresses = await Promise.all(ids.map(async () => `127.0.0.1:${await freePort()}`));
    const draft: ShardMapDraft = {
      shards: Object.fromEntries(
        ids.map((id, i) => [id, { endpoint: addresses[i]!, state: "active" as const }]),
      ),
      defaultShard: "a",
      commands: options.commands ?? {},
      tenants: {},
      migrations: [],
    };
    const source = mapSource();
    await source
      .compareAndSet(0, draft, {
        actor: "local-cluster",
        action: "Bootstrap",
        summary: `shards ${ids.join(", ")}; default a`,
      })
      .finally(() => source.close());

    /**
     * Starts one service (its kind's cluster settings, a metrics port, the caller's
     * environment, then its address, the control store and `own`) and keeps it for stop.
     */
    const startService = async (
      name: string,
      service: "shard" | "router",
      address: string,
      own: Record<string, string>,
      credentials?: ChannelCredentials,
    ) => {
      const role = service === "shard" ? "SHARD" : "ROUTER";
      const proc = await ServiceProcess.start(
        name,
        service,
        address,
        {
          ...clusterEnv(role, secret),
          [`CODEQ_${role}_METRICS_LISTEN`]: `127.0.0.1:${await freePort()}`,
          ...env,
          [`CODEQ_${role}_LISTEN`]: address,
          [`CODEQ_${role}_CONTROL_URL`]: control.url,
          ...own,
        },
        { credentials, ownGroup },
      );
      started.push(proc);
      return proc;
    };

    const shards: LocalShard[] = [];
    for (const [i, id] of ids.entries()) {
      const store = await RedisServer.start({ spawnOnly: true, persistent: true, ownGroup });
      started.push(store);
      const address = addresses[i]!;
      const startWorker = () =>
        startService(`shard-${id}`, "shard", address, {
          CODEQ_SHARD_ID: id,
          CODEQ_SHARD_REDIS_URL: store.url,
        });
      const shard = {
        id,
        address,
        store,
        worker: await startWorker(),
        async restartWorker() {
          await shard.worker.stop();
          shard.worker = await startWorker();
          return shard.worker;
        },
      };
      shards.push(shard);
    }
    const routers: ServiceProcess[] = [];
    for (let i = 0; i < routerCount; i++) {
      const address = `127.0.0.1:${await freePort()}`;
      const router = await startService(
        `router-${i + 1}`,
        "router",
        address,
        {},
        options.routerCredentials,
      );
      routers.push(router);
    }
    const shardMetadata = (tenant = "ops", roles = "producer,worker,admin") =>
      identityMetadata(
        { tenant, principal: `local:${tenant}`, roles: new Set(roles.split(",") as Role[]) },
        secret,
      );
    return { control, shards, routers, mapSource, shardMetadata, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
