/**
 * The default ShardSupplier: resolves against the map a `MapCache` holds, so
 * every answer follows the control store's map as soon as the cache has it, and
 * keeps answering from the last good map while the control store is down.
 */
import type { MapCache } from "./map-cache";
import { currentShardOf, queueShardsOf } from "./resolve";
import type { ShardSupplier } from "./supplier";

export class MapSupplier implements ShardSupplier {
  constructor(readonly cache: MapCache) {}

  /** Throws MapNotLoadedError until the cache has loaded a map. */
  currentShard(command: string, tenant: string): string {
    return currentShardOf(this.cache.current(), command, tenant);
  }

  /** Throws MapNotLoadedError until the cache has loaded a map. */
  queueShards(command: string, tenant: string): string[] {
    return queueShardsOf(this.cache.current(), command, tenant);
  }
}
