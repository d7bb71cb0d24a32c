import type { RedisOptions } from "ioredis";
import { entry, MapCache, RedisMapSource, type ShardMap } from "@codeq/shardmap";
import type { Logger } from "@codeq/server-kit";
import type { ShardConfig } from "./config";
import { ShardFence } from "./fence";

/** A shard worker's view of the shard map in the control store, and the fence built on it. */
export interface MapFollower {
  readonly cache: MapCache;
  /** The control store's map, for the mover's compare-and-set writes. */
  readonly source: RedisMapSource;
  readonly fence: ShardFence;
  /** Logs once when the map turns stale (control store unreachable) and once when it recovers. */
  checkStale(): void;
  stop(): Promise<void>;
}

/**
 * Loads the shard map (waiting until one exists, up to the cache's start timeout),
 * then follows its announcements and polls every `mapPollMs`. While the control
 * store is unreachable the last map keeps being served, and said so.
 */
export async function followShardMap(
  config: ShardConfig,
  logger: Logger,
  /** ioredis options towards the control store (its TLS). */
  controlOptions: RedisOptions,
): Promise<MapFollower> {
  const source = new RedisMapSource({
    url: config.controlUrl,
    prefix: config.controlPrefix,
    redisOptions: controlOptions,
    // Repeats every retry while the control store is down; checkStale() says it once.
    onError: (err) => logger.debug({ err: err.message }, "control store connection error"),
  });
  const cache = new MapCache(source, {
    pollMs: config.mapPollMs,
    onError: (err) => logger.debug({ err: err.message }, "shard map refresh failed"),
  });
  cache.onChange((map, previous) => {
    const before = previous && ownership(previous, config.id);
    logger.info(
      {
        version: map.version,
        previous: previous?.version,
        ownershipChanged: before !== undefined && before !== ownership(map, config.id),
      },
      previous ? "shard map changed" : "shard map loaded",
    );
    if (!entry(map.shards, config.id))
      logger.warn(
        { version: map.version, shard: config.id },
        "the shard map does not name this shard: it owns no queue and refuses every enqueue",
      );
  });
  logger.info(
    { controlPrefix: config.controlPrefix },
    "loading the shard map (waiting for one to exist)",
  );
  try {
    await cache.start();
  } catch (err) {
    await source.close();
    throw err;
  }

  let wasStale = false;
  return {
    cache,
    source,
    fence: new ShardFence(config.id, cache),
    checkStale() {
      const { stale, version, lastError } = cache.status();
      if (stale === wasStale) return;
      wasStale = stale;
      if (stale)
        logger.warn(
          { version, err: lastError?.message },
          "shard map may be stale: the control store does not answer; serving the last map",
        );
      else logger.info({ version }, "shard map confirmed again by the control store");
    },
    async stop() {
      cache.stop();
      await source.close();
    },
  };
}

/**
 * What `shard` owns under `map`, as a comparable string (for the change log): the
 * default flag, the commands and tenant overrides that name it, and the exceptions
 * carved out of what it owns.
 */
function ownership(map: ShardMap, shard: string): string {
  const isDefault = map.defaultShard === shard;
  const ownsCommand = (c: string) =>
    map.commands[c] === undefined ? isDefault : map.commands[c] === shard;
  const keys = (table: Readonly<Record<string, string>>, keep: (k: string) => boolean) =>
    Object.keys(table).filter(keep).sort();
  return JSON.stringify([
    isDefault,
    // as the default shard, a command mapped elsewhere is an exception: "!" marks it
    keys(map.commands, (c) => map.commands[c] === shard || isDefault).map((c) =>
      map.commands[c] === shard ? c : `!${c}`,
    ),
    keys(map.tenants, (k) => map.tenants[k] === shard),
    keys(
      map.tenants,
      (k) => map.tenants[k] !== shard && ownsCommand(k.slice(0, k.lastIndexOf("/"))),
    ),
  ]);
}
