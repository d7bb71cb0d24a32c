import { NAME_PATTERN } from "@codeq/engine";
import type { EnqueueRequest, Task } from "@codeq/proto";
import type { FuzzCluster } from "./fuzz-fixture";
import {
  attacker,
  FUZZ_TENANTS,
  opts,
  SHARD_OF,
  TWELVE_HOURS,
  victim,
  VICTIM_COMMANDS,
} from "./fuzz-settings";

/**
 * The victim of the router's fuzz tests: the tasks it stores before the fuzzing (and
 * the attacker's own leases), a snapshot of them and of their keys, and the checks
 * that the fuzzing changed none of it and left no stray key behind.
 */

/** What the victim stored, and the real tokens the fuzzing forges from. */
export interface Seeded {
  readonly tasks: { command: string; id: string }[];
  readonly deadIds: string[];
  readonly victimTokens: string[];
  readonly attackerTokens: string[];
}

export interface Snapshot {
  /** The victim's tasks as its shards store them (read beside the router, whatever its state). */
  readonly tasks: Record<string, unknown>;
  readonly counts: Record<string, unknown>;
  readonly keys: Record<string, unknown>;
}

/** The victim's state before the fuzzing, and every key that existed then. */
export interface Baseline {
  readonly snapshot: Snapshot;
  readonly view: Record<string, Task | undefined>;
  readonly keys: Set<string>;
}

export async function seed(fx: FuzzCluster): Promise<Seeded> {
  const q = fx.q;
  const tasks: Seeded["tasks"] = [];
  const deadIds: string[] = [];
  const victimTokens: string[] = [];
  const v = (command: string, extra: Partial<EnqueueRequest> = {}) =>
    q
      .enqueue({ command, payload: Buffer.from(`victim ${command}`), ...extra }, opts(victim))
      .then(({ taskId }) => (tasks.push({ command, id: taskId }), taskId));
  const leaseOne = async (command: string) => {
    const got = await q.lease(
      { commands: [command], maxTasks: 1, leaseDurationMs: TWELVE_HOURS },
      opts(victim),
    );
    return got.tasks[0]!.leaseToken;
  };
  for (const command of VICTIM_COMMANDS) {
    // one task at a time is ready while it is leased, so each lease takes the one meant
    deadIds.push(await v(command, { maxAttempts: 1 }));
    const dying = await leaseOne(command);
    await q.nack(
      { items: [{ leaseToken: dying, deadLetter: true, error: "poison" }] },
      opts(victim),
    );
    await v(command);
    await q.ack(
      { items: [{ leaseToken: await leaseOne(command), result: Buffer.from("done") }] },
      opts(victim),
    );
    await v(command, { priority: 5, idempotencyKey: `held-${command}`, headers: { trace: "t1" } });
    victimTokens.push(await leaseOne(command));
    for (const priority of [0, 4, 9]) await v(command, { priority });
    await v(command, { delayMs: 3_600_000, idempotencyKey: `later-${command}` });
  }
  // the attacker's own leases: settling these may succeed
  for (let i = 0; i < 4; i++) await q.enqueue({ command: "AQ" }, opts(attacker));
  const own = await q.lease(
    { commands: ["AQ"], maxTasks: 4, leaseDurationMs: TWELVE_HOURS },
    opts(attacker),
  );
  return { tasks, deadIds, victimTokens, attackerTokens: own.tasks.map((t) => t.leaseToken) };
}

export async function scan(fx: FuzzCluster, match: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = "0";
  do {
    const [next, batch] = await fx.redis.scan(cursor, "MATCH", match, "COUNT", 1000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== "0");
  return keys.sort();
}

/** `<shard prefix>:q:{<command>:<tenant>:s:<shard>}:<type>`: the parts of a queue key. */
const QUEUE_KEY = /^(.*)-([a-z0-9-]+):q:\{([^{}]*?):([^{}:]*):s:([^{}]*)\}:(.*)$/s;
const QUEUE_TYPES =
  /^(tasks|state|payloads|results|ready:[0-9]|scheduled|leased|dead|completed|moving|idemidx|idem:.+)$/s;

async function dump(fx: FuzzCluster, key: string): Promise<unknown> {
  const redis = fx.redis;
  const type = await redis.type(key);
  switch (type) {
    case "hash":
      return { type, value: await redis.hgetallBuffer(key) };
    case "list":
      return { type, value: await redis.lrangeBuffer(key, 0, -1) };
    case "zset":
      return { type, value: await redis.zrange(key, "0", "-1", "WITHSCORES") };
    case "set":
      return { type, value: (await redis.smembers(key)).sort() };
    default:
      return { type, value: await redis.getBuffer(key) };
  }
}

/** The victim's tasks as stored, its counts, and its keys byte for byte. */
export async function snapshot(fx: FuzzCluster): Promise<Snapshot> {
  const { rc, redis, cp } = fx;
  const tasks: Snapshot["tasks"] = {};
  for (const { command, id } of fx.seeded.tasks)
    tasks[id] = await rc.workers
      .get(SHARD_OF[command]!)!
      .engine.getTask({ command, tenant: "victim" }, id);
  const counts: Snapshot["counts"] = {};
  for (const [shard, worker] of rc.workers)
    for (const command of VICTIM_COMMANDS)
      counts[`${shard}/${command}`] = await worker.engine.stats({ command, tenant: "victim" });
  const keys: Snapshot["keys"] = {};
  for (const key of await scan(fx, `${cp}*victim*`)) {
    const m = QUEUE_KEY.exec(key);
    if (m?.[4] === "victim") keys[key] = await dump(fx, key);
  }
  for (const shard of rc.workers.keys()) {
    const base = `${cp}-${shard}:s:${shard}`;
    for (const command of VICTIM_COMMANDS) {
      keys[`${base}:queues ∋ ${command}:victim`] = await redis.sismember(
        `${base}:queues`,
        `${command}:victim`,
      );
    }
  }
  return { tasks, counts, keys };
}

/** The victim's tasks as it reads them through the router. */
export async function victimView(fx: FuzzCluster): Promise<Record<string, Task | undefined>> {
  const view: Record<string, Task | undefined> = {};
  for (const { command, id } of fx.seeded.tasks)
    view[id] = (await fx.q.getTask({ command, taskId: id }, opts(victim))).task;
  return view;
}

export async function expectVictimUntouched(fx: FuzzCluster): Promise<void> {
  const now = await snapshot(fx);
  expect(now.tasks).toEqual(fx.baseline.snapshot.tasks);
  expect(now.counts).toEqual(fx.baseline.snapshot.counts);
  expect(now.keys).toEqual(fx.baseline.snapshot.keys);
}

/**
 * Every key is one that existed before the fuzzing, or a key of the layout for a
 * queue with valid names of a tenant the fuzzing acts as, or the control store's;
 * shard registries name only valid queues.
 */
export async function expectNoStrayKeys(fx: FuzzCluster): Promise<void> {
  const { rc, redis, cp } = fx;
  const stray: string[] = [];
  for (const key of await scan(fx, `${cp}*`)) {
    if (fx.baseline.keys.has(key)) continue;
    if (key.startsWith(`${cp}:ctl:`) && /^[A-Za-z0-9:_.-]+$/.test(key)) continue;
    const m = QUEUE_KEY.exec(key);
    const ok =
      m !== null &&
      m[1] === cp &&
      m[2] === m[5] &&
      rc.workers.has(m[2]!) &&
      NAME_PATTERN.test(m[3]!) &&
      FUZZ_TENANTS.has(m[4]!) &&
      QUEUE_TYPES.test(m[6]!);
    if (!ok) stray.push(key.slice(0, 200));
  }
  for (const shard of rc.workers.keys()) {
    const base = `${cp}-${shard}:s:${shard}`;
    const members = [
      ...(await redis.smembers(`${base}:queues`)),
      ...(await redis.zrange(`${base}:due`, "0", "-1")),
    ];
    for (const id of members)
      if (!/^[A-Za-z0-9_.-]{1,128}:[A-Za-z0-9_.-]{1,128}$/.test(id))
        stray.push(`member of ${base}: ${id.slice(0, 200)}`);
  }
  expect(stray).toEqual([]);
}
