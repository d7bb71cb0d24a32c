/**
 * `ShardSupplier`: resolves a queue (command, tenant) to shards. Routers send new
 * enqueues to `currentShard` and lease from every shard of `queueShards`, the
 * shards still being drained first. Implementations: `MapSupplier` (the control
 * store's map through a cache; the default), `StaticYamlSupplier` (a file) and
 * `HashSupplier` (consistent hashing, no map). All are deterministic and safe to
 * call concurrently (they never block and never mutate shared state).
 */
export interface ShardSupplier {
  /** Where new enqueues of the queue go. */
  currentShard(command: string, tenant: string): string;
  /**
   * Every shard that may still hold tasks of the queue: the shards unfinished
   * migrations of the queue are moving off first, then the current shard; no duplicates.
   */
  queueShards(command: string, tenant: string): string[];
}
