import {
  backoffKindToJSON,
  breakerStateToJSON,
  migrationStateToJSON,
  shardStateToJSON,
  taskStateToJSON,
  type LeasedTask,
  type Migration,
  type ShardMap,
  type ShardStatus,
  type Task,
} from "@codeq/proto";

/**
 * JSON text of a response for scripts: bigints as numbers when safe (strings
 * otherwise), bytes as base64 strings, two-space indent.
 */
export function toJson(value: unknown): string {
  return JSON.stringify(
    value,
    function (this: Record<string, unknown>, key, v: unknown) {
      // Buffer#toJSON runs before the replacer: look at the holder's original value
      const raw = key === "" ? v : this[key];
      if (raw instanceof Uint8Array) return Buffer.from(raw).toString("base64");
      if (typeof v === "bigint")
        return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER)
          ? Number(v)
          : v.toString();
      return v;
    },
    2,
  );
}

/** One-line JSON (for streams: one object per line). */
export function toJsonLine(value: unknown): string {
  return JSON.stringify(JSON.parse(toJson(value)));
}

// Enums as their proto names (as the proto3 JSON mapping writes them), every
// other field as the response has it, defaults included.

export const migrationJson = (m: Migration) => ({
  ...m,
  state: migrationStateToJSON(m.state),
});

export const shardStatusJson = (s: ShardStatus) => ({
  ...s,
  shard: s.shard && { ...s.shard, state: shardStateToJSON(s.shard.state) },
  breaker: breakerStateToJSON(s.breaker),
});

export const shardMapJson = (m: ShardMap) => ({
  ...m,
  shards: m.shards.map((s) => ({ ...s, state: shardStateToJSON(s.state) })),
  migrations: m.migrations.map(migrationJson),
});

export const taskJson = (t: Task) => ({
  ...t,
  state: taskStateToJSON(t.state),
  backoff: t.backoff && { ...t.backoff, kind: backoffKindToJSON(t.backoff.kind) },
});

export const leasedTaskJson = (t: LeasedTask) => ({ ...t, task: t.task && taskJson(t.task) });
