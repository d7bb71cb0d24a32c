/**
 * The storage key layout (SPEC §3). Every key of one queue shares one hash tag,
 * so a script can declare all of them and a Redis Cluster keeps them on one node:
 *
 *   sharded: <prefix>:q:{<command>:<tenant>:s:<shard>}:<type>[:<priority>]
 *   legacy:  <prefix>:q:<command>:<tenant>:<type>[:<priority>]   (single shard only)
 *
 * Queue key types:
 *   tasks      HASH  task id → immutable task record (JSON: backoff, headers, idempotency key, created)
 *   state      HASH  task id → mutable state, one compact string (lua/includes/task-state.lua)
 *   payloads   HASH  task id → payload bytes
 *   results    HASH  task id → ack result bytes
 *   ready:<p>  LIST  READY task ids of priority p (0..9), FIFO: pushed at the tail, leased from the head
 *   scheduled  ZSET  SCHEDULED task ids by run-at ms
 *   leased     ZSET  LEASED task ids by lease deadline ms (the in-flight index the reaper reads)
 *   dead       ZSET  DEAD task ids by time of death ms
 *   completed  LIST  COMPLETED task ids in completion order (for retention)
 *   moving     ZSET  task ids reserved by the migration mover, by reservation ms
 *   idemidx    ZSET  idempotency keys by expiry ms (for the mover and cleanup)
 *   idem:<key> STRING idempotency key → task id, expiring with the window
 *   landed:<migration> SET task ids a migration's imports stored (or found) here, kept 7
 *              days: what an abort's source asks about (HeldTasks)
 *
 * Shard key types (one per shard, not per queue):
 *   <prefix>:s:<shard>:due     ZSET queue id → earliest ms the background loops have work there
 *   <prefix>:s:<shard>:queues  SET  the queue ids that hold a task, an idempotency key or a reservation
 *   (legacy: <prefix>:s:due and <prefix>:s:queues)
 */

export type KeyLayout = "sharded" | "legacy";

// names (command, tenant) used in keys: no `{`, `}`, `:` or control characters; one rule for every package
export { NAME_PATTERN, SHARD_ID_PATTERN } from "@codeq/common";
export const PRIORITIES = 10;

export interface QueueRef {
  readonly command: string;
  readonly tenant: string;
}

/** The key names of one queue. */
export interface QueueKeys {
  readonly tasks: string;
  readonly state: string;
  readonly payloads: string;
  readonly results: string;
  /** ready[p] for priority p = 0..9. */
  readonly ready: readonly string[];
  readonly scheduled: string;
  readonly leased: string;
  readonly dead: string;
  readonly completed: string;
  readonly moving: string;
  readonly idemidx: string;
  /** The shard-level due index and queue registry, declared by the scripts that update them. */
  readonly due: string;
  readonly queues: string;
  /** The key of one idempotency key. */
  idem(key: string): string;
  /** The ids a migration's imports stored here (or found here), kept for an abort. */
  landed(migrationId: string): string;
}

export interface KeyLayoutOptions {
  /** First segment of every key. Default "codeq". */
  readonly prefix?: string;
  readonly layout?: KeyLayout;
  readonly shard: string;
}

/** The queue id stored in the shard-level due index and registry: "<command>:<tenant>". */
export function queueId(ref: QueueRef): string {
  return `${ref.command}:${ref.tenant}`;
}

/** Inverse of queueId. */
export function parseQueueId(id: string): QueueRef {
  const at = id.indexOf(":");
  return { command: id.slice(0, at), tenant: id.slice(at + 1) };
}

export interface ShardKeys {
  readonly due: string;
  readonly queues: string;
}

/** The shard-level keys. */
export function shardKeys(options: KeyLayoutOptions): ShardKeys {
  const prefix = options.prefix ?? "codeq";
  const base = options.layout === "legacy" ? `${prefix}:s` : `${prefix}:s:${options.shard}`;
  return { due: `${base}:due`, queues: `${base}:queues` };
}

/** The key names of queue (command, tenant) on a shard. Names must already be validated. */
export function queueKeys(ref: QueueRef, options: KeyLayoutOptions): QueueKeys {
  const prefix = options.prefix ?? "codeq";
  const base =
    options.layout === "legacy"
      ? `${prefix}:q:${ref.command}:${ref.tenant}`
      : `${prefix}:q:{${ref.command}:${ref.tenant}:s:${options.shard}}`;
  const shard = shardKeys(options);
  return {
    tasks: `${base}:tasks`,
    state: `${base}:state`,
    payloads: `${base}:payloads`,
    results: `${base}:results`,
    ready: Array.from({ length: PRIORITIES }, (_, p) => `${base}:ready:${p}`),
    scheduled: `${base}:scheduled`,
    leased: `${base}:leased`,
    dead: `${base}:dead`,
    completed: `${base}:completed`,
    moving: `${base}:moving`,
    idemidx: `${base}:idemidx`,
    due: shard.due,
    queues: shard.queues,
    idem: (key: string) => `${base}:idem:${key}`,
    landed: (migrationId: string) => `${base}:landed:${migrationId}`,
  };
}
