/**
 * The shard map: the serving view of routing, stored as ONE JSON document under
 * `<prefix>:ctl:shardmap` in the control store. It names the shards (endpoint and
 * state), the default shard, command mappings, tenant overrides (keyed
 * `<command>/<tenant>`) and the migrations of queues between shards. Every change
 * is a compare-and-set that bumps `version` by one; changes are announced on
 * `<prefix>:ctl:shardmap:changed` and recorded in the audit list `<prefix>:ctl:audit`.
 */

/** `active`: serves its queues and may be assigned more. `draining`: serves what it holds, takes nothing new. */
export type ShardState = "active" | "draining";

export interface ShardInfo {
  /** host:port of the shard worker's gRPC server. */
  readonly endpoint: string;
  readonly state: ShardState;
}

/**
 * copying: routing switched to `to`, the mover copies from `from`. draining: all movable
 * tasks moved, leased ones are awaited. completed: `from` holds nothing of the queue.
 * aborting: routing is back on `from` and moved tasks move back from `to`. aborted: done.
 * abandoned: one side was removed as lost (`lostShard`); the other owns the queue.
 */
export type MigrationState =
  "copying" | "draining" | "completed" | "aborting" | "aborted" | "abandoned";

/** A move of one command (every tenant without an override) or of one tenant's queue. */
export interface Migration {
  readonly id: string;
  readonly command: string;
  /** Set: only this tenant's queue moves. Unset: the command moves for every tenant without an override. */
  readonly tenant?: string;
  readonly from: string;
  readonly to: string;
  readonly state: MigrationState;
  readonly startedAtMs: number;
  readonly updatedAtMs?: number;
  readonly finishedAtMs?: number;
  /** The map version that started the migration. */
  readonly mapVersion?: number;
  /** Who asked for it. */
  readonly requestedBy?: string;
  /** The last error the mover hit (it retries on its own). */
  readonly lastError?: string;
  /**
   * Whether the queue had a routing entry of its own before the move (a tenant override
   * for a tenant's move, a command mapping for a command's). False: it followed the
   * command's shard (or the default), and an abort takes the entry the move made away
   * again instead of pinning the queue to `from`. Unset (older records): kept, as before.
   */
  readonly hadOwnRoute?: boolean;
  /** Abandoned: the shard that was removed as lost. */
  readonly lostShard?: string;
}

export interface ShardMap {
  /** 1 for the first map; +1 with every change. 0 is never stored (it means "no map"). */
  readonly version: number;
  readonly updatedAtMs: number;
  readonly shards: Readonly<Record<string, ShardInfo>>;
  /** Owner of every queue without a tenant override or command mapping. */
  readonly defaultShard: string;
  /**
   * The default shard before the last change of it, while that change is being
   * finished (SetDefaultShard): until its worker has the new map it may take the first
   * tasks of commands new to it, so it is read for every queue that follows the
   * default; cleared once what it took is moving. Unset otherwise.
   */
  readonly formerDefault?: string;
  /** command → shard id. */
  readonly commands: Readonly<Record<string, string>>;
  /** `<command>/<tenant>` → shard id; wins over the command mapping. */
  readonly tenants: Readonly<Record<string, string>>;
  readonly migrations: readonly Migration[];
}

/** What a writer supplies: the source sets `version` and `updatedAtMs`. */
export type ShardMapDraft = Omit<ShardMap, "version" | "updatedAtMs">;

/** The routing part of a map: what resolution reads (a static map has no migrations). */
export type RoutingTable = Pick<ShardMap, "shards" | "defaultShard" | "commands" | "tenants"> & {
  readonly migrations?: readonly Migration[];
  readonly formerDefault?: string;
};

/** The key prefix of a default deployment. */
export const DEFAULT_PREFIX = "codeq";

/**
 * A control-store connection that receives nothing for this long while a command waits
 * is taken as dead and replaced, ms (ioredis `socketTimeout`).
 */
export const CONTROL_SOCKET_TIMEOUT_MS = 30_000;

/**
 * How long an enqueue refused by fencing waits for a shard map refresh (in a router,
 * or in a shard worker a router is ahead of) before it is answered on the map held, ms:
 * a control store that does not answer holds no enqueue for its read's whole timeout.
 */
export const FENCE_REFRESH_MS = 1_000;

/** How many audit entries the control store keeps. */
export const DEFAULT_AUDIT_CAP = 10_000;

/** The key holding the map document. */
export function shardMapKey(prefix: string = DEFAULT_PREFIX): string {
  return `${prefix}:ctl:shardmap`;
}

/** The list of audit entries, newest first. */
export function auditKey(prefix: string = DEFAULT_PREFIX): string {
  return `${prefix}:ctl:audit`;
}

/** The pub/sub channel on which every new version is announced (message: the version). */
export function changedChannel(prefix: string = DEFAULT_PREFIX): string {
  return `${prefix}:ctl:shardmap:changed`;
}

/** True while a migration still moves tasks (copying, draining or aborting). */
export function isUnfinished(migration: Pick<Migration, "state">): boolean {
  return (
    migration.state === "copying" ||
    migration.state === "draining" ||
    migration.state === "aborting"
  );
}

/**
 * True when two moves may cover one queue: of one command, and of the whole command or
 * of the same tenant.
 */
export function movesOverlap(
  a: Pick<Migration, "command" | "tenant">,
  b: Pick<Migration, "command" | "tenant">,
): boolean {
  return (
    a.command === b.command &&
    (a.tenant === undefined || b.tenant === undefined || a.tenant === b.tenant)
  );
}

/** The shard tasks are moving off (the source; the target while aborting). */
export function drainingSide(migration: Migration): string {
  return migration.state === "aborting" ? migration.to : migration.from;
}

/**
 * Whether `migration` may hold a batch reserved on `shard`: the shard it drains, and
 * its source while it is aborting (a batch reserved before the abort, until put back).
 */
export function takesFrom(migration: Migration, shard: string): boolean {
  return migration.from === shard || drainingSide(migration) === shard;
}

/** The shard tasks are moving onto. */
export function fillingSide(migration: Migration): string {
  return migration.state === "aborting" ? migration.from : migration.to;
}

/** The queue a migration moves, as a label: `<command>` or `<command>/<tenant>`. */
export function migrationQueue(migration: Pick<Migration, "command" | "tenant">): string {
  return migration.tenant === undefined
    ? migration.command
    : `${migration.command}/${migration.tenant}`;
}

/**
 * A map table's entry for `key`, own properties only: a name such as `__proto__` or
 * `constructor` is an ordinary (absent) key, never the object prototype.
 */
export function entry<T>(table: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}
