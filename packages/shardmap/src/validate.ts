/**
 * Validation of a shard map, returning EVERY problem rather than the first, each
 * as one readable line that says where and what (`commands.SEND_EMAIL: shard "x"
 * is not in shards`). The shape (types, name patterns, states) is checked with a
 * zod schema; the references between parts (mappings, overrides and migrations
 * naming known shards, at most one unfinished migration per queue, each moving its
 * queue onto the shard the queue is routed to) are checked
 * by hand on whatever part of the input is well-formed, so one broken field does
 * not hide the others. Stored maps are checked loosely (unknown fields are kept,
 * for writers newer than this reader); hand-written static files strictly.
 */
import { z } from "zod";
import { formatProblems, ShardMapError } from "./errors";
import { isEndpoint, NAME_PATTERN, SHARD_ID_PATTERN, TENANT_KEY_PATTERN } from "./names";
import { currentShardOf } from "./resolve";
import {
  fillingSide,
  isUnfinished,
  migrationQueue,
  type Migration,
  type RoutingTable,
  type ShardMap,
} from "./shard-map";

export interface ValidateOptions {
  /** Unknown fields are problems (for hand-written files). Default false: they are kept. */
  strict?: boolean;
  /**
   * A map about to be written (or a file read at start): also the problems a stored
   * map is let off with, so that one written before a rule came is still read (and
   * can be mended by a write): two shards on one endpoint.
   */
  write?: boolean;
  /**
   * The map a write replaces, if known: two shards that already shared an endpoint
   * in it are let off (only a pair the write makes is refused), so that a stored map
   * with such a pair can still take the change that mends it.
   */
  previous?: ShardMap;
}

const quoted = (input: unknown) => JSON.stringify(input) ?? String(input);

const shardId = z.string().regex(SHARD_ID_PATTERN, {
  error: (iss) => `shard id ${quoted(iss.input)} must match ${SHARD_ID_PATTERN.source}`,
});
const name = (what: string) =>
  z.string().regex(NAME_PATTERN, {
    error: (iss) => `${what} ${quoted(iss.input)} must match ${NAME_PATTERN.source}`,
  });
const tenantKeyName = z.string().regex(TENANT_KEY_PATTERN, {
  error: (iss) =>
    `tenant override key ${quoted(iss.input)} must be <command>/<tenant>, each matching ${NAME_PATTERN.source}`,
});
const endpoint = z.string().refine(isEndpoint, {
  error: (iss) => `endpoint ${quoted(iss.input)} must be host:port (port 1..65535)`,
});
const millis = z.number().int().nonnegative();

function schemaFor(strict: boolean) {
  const object = strict ? z.strictObject : z.object;
  const migration = object({
    id: name("migration id"),
    command: name("command"),
    tenant: name("tenant").optional(),
    from: shardId,
    to: shardId,
    state: z.enum(["copying", "draining", "completed", "aborting", "aborted", "abandoned"]),
    startedAtMs: millis,
    updatedAtMs: millis.optional(),
    finishedAtMs: millis.optional(),
    mapVersion: z.number().int().nonnegative().optional(),
    requestedBy: z.string().optional(),
    lastError: z.string().optional(),
    hadOwnRoute: z.boolean().optional(),
    lostShard: shardId.optional(),
  });
  return object({
    version: z.number().int().nonnegative(),
    updatedAtMs: millis,
    shards: z.record(shardId, object({ endpoint, state: z.enum(["active", "draining"]) })),
    defaultShard: z.string(),
    formerDefault: z.string().optional(),
    commands: z.record(name("command"), z.string()),
    tenants: z.record(tenantKeyName, z.string()),
    migrations: z.array(migration),
  });
}

const loose = schemaFor(false);
const strict = schemaFor(true);

/** Every problem of `input` as a shard map; empty when it is valid. */
export function validateShardMap(input: unknown, options: ValidateOptions = {}): string[] {
  const parsed = (options.strict ? strict : loose).safeParse(input);
  const problems = parsed.success ? [] : parsed.error.issues.map(describeIssue);
  return [...problems, ...referenceProblems(input, options.write === true, options.previous)];
}

/** Returns `input` as a ShardMap, or throws a ShardMapError listing every problem. */
export function assertShardMap(
  input: unknown,
  what = "shard map",
  options: ValidateOptions = {},
): ShardMap {
  const problems = validateShardMap(input, options);
  if (problems.length > 0) {
    throw new ShardMapError(formatProblems(`invalid ${what}:`, problems), { problems });
  }
  return input as ShardMap;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const where = formatPath(issue.path);
  let message = issue.message;
  if (issue.code === "invalid_key" && issue.issues[0]) message = issue.issues[0].message;
  if (issue.code === "invalid_type" && message.endsWith("received undefined"))
    message = "is required";
  if (issue.code === "unrecognized_keys") message = `unknown field(s) ${issue.keys.join(", ")}`;
  return where ? `${where}: ${message}` : message;
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (typeof segment === "string" && /^[A-Za-z_][A-Za-z0-9_]*$/.test(segment))
      out += out ? `.${segment}` : segment;
    else out += `[${JSON.stringify(String(segment))}]`;
  }
  return out;
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** Names of this machine's loopback address, any of which a local worker answers on. */
const LOOPBACK = new Set(["localhost", "127.0.0.1", "[::1]"]);

/**
 * An endpoint as compared for duplicates: host names are not case-sensitive, an
 * address is compared in its one form (`[0:0::1]` is `[::1]`), the loopback's names
 * are one host, and a port is a number. (Two names that resolve to one address
 * elsewhere are not caught; ListShards shows such a shard unhealthy, its worker
 * answering with another id.)
 */
function endpointKey(endpoint: string): string {
  const colon = endpoint.lastIndexOf(":");
  const port = Number(endpoint.slice(colon + 1));
  let host = endpoint.slice(0, colon).toLowerCase();
  try {
    // the URL parser's forms: IPv6 compressed, IPv4 dotted-decimal (127.1 → 127.0.0.1)
    host = new URL(`http://${host}/`).hostname;
  } catch {
    // not a host the parser takes: compared as written
  }
  return `${LOOPBACK.has(host) ? "loopback" : host}:${port}`;
}

/**
 * Whether shards `a` and `b` of `map` are at one endpoint, as the rule against two
 * shards on one endpoint compares them (`endpointKey`).
 */
export function sharesEndpoint(map: Pick<ShardMap, "shards">, a: string, b: string): boolean {
  const at = (id: string) => (Object.hasOwn(map.shards, id) ? map.shards[id]!.endpoint : undefined);
  const [x, y] = [at(a), at(b)];
  return x !== undefined && y !== undefined && endpointKey(x) === endpointKey(y);
}

/** Whether every shard of `ids` was at the endpoint `key` (an `endpointKey`) in `map`. */
function sharedThere(map: Pick<ShardMap, "shards">, ids: string[], key: string): boolean {
  return ids.every(
    (id) => Object.hasOwn(map.shards, id) && endpointKey(map.shards[id]!.endpoint) === key,
  );
}

/**
 * Problems between parts of the map, checked on whichever parts are well-formed.
 * `write`: two shards on one endpoint are a problem too, unless they already shared
 * it in `previous`, the map the write replaces.
 */
function referenceProblems(input: unknown, write: boolean, previous?: ShardMap): string[] {
  if (!isRecord(input)) return [];
  const problems: string[] = [];
  const shards = isRecord(input.shards) ? input.shards : undefined;
  const known = (id: unknown): boolean =>
    shards === undefined || (typeof id === "string" && Object.hasOwn(shards, id));

  // two ids for one worker: it answers for one of them only (its own id), and a move
  // onto the other never ends
  const byEndpoint = new Map<string, { id: string; endpoint: string }>();
  for (const [id, info] of Object.entries(write ? (shards ?? {}) : {})) {
    const endpoint = isRecord(info) ? info.endpoint : undefined;
    if (typeof endpoint !== "string") continue;
    const key = endpointKey(endpoint);
    const first = byEndpoint.get(key);
    if (first === undefined) byEndpoint.set(key, { id, endpoint });
    else if (!(previous && sharedThere(previous, [first.id, id], key)))
      problems.push(
        `${formatPath(["shards", id, "endpoint"])}: ${quoted(endpoint)} is shard ${quoted(first.id)}'s too${first.endpoint === endpoint ? "" : ` (${quoted(first.endpoint)})`}; each shard has a worker of its own`,
      );
  }
  if (typeof input.defaultShard === "string" && !known(input.defaultShard)) {
    problems.push(`defaultShard: shard ${quoted(input.defaultShard)} is not in shards`);
  }
  // on writes only: a writer that predates the field may leave it naming a shard it
  // removed, or the default again; readers then ignore it (resolve.ts), not the map
  if (write && typeof input.formerDefault === "string") {
    if (!known(input.formerDefault))
      problems.push(`formerDefault: shard ${quoted(input.formerDefault)} is not in shards`);
    else if (input.formerDefault === input.defaultShard)
      problems.push("formerDefault: it is the default shard itself");
  }
  for (const field of ["commands", "tenants"] as const) {
    const table = input[field];
    if (!isRecord(table)) continue;
    for (const [key, shard] of Object.entries(table)) {
      if (typeof shard === "string" && !known(shard)) {
        problems.push(`${formatPath([field, key])}: shard ${quoted(shard)} is not in shards`);
      }
    }
  }
  if (Array.isArray(input.migrations))
    problems.push(...migrationProblems(input.migrations, known, routedBy(input)));
  return problems;
}

/**
 * Where the map routes a queue (`currentShardOf`), when the parts that decide it are
 * well-formed; undefined otherwise (their own problems are reported).
 */
function routedBy(
  input: Record<string, unknown>,
): ((command: string, tenant?: string) => string | undefined) | undefined {
  const { commands, tenants, defaultShard } = input;
  if (!isRecord(commands) || !isRecord(tenants) || typeof defaultShard !== "string")
    return undefined;
  const table = input as unknown as RoutingTable;
  return (command, tenant) => {
    // an entry that is no string is a problem of its own
    const shard: unknown = currentShardOf(table, command, tenant);
    return typeof shard === "string" ? shard : undefined;
  };
}

function migrationProblems(
  migrations: unknown[],
  known: (id: unknown) => boolean,
  routed: ((command: string, tenant?: string) => string | undefined) | undefined,
): string[] {
  const problems: string[] = [];
  const ids = new Set<string>();
  const runningByQueue = new Map<string, number>();
  const wholeCommand = new Map<string, number>();
  const perTenant = new Map<string, number>();
  migrations.forEach((raw, i) => {
    if (!isRecord(raw)) return;
    const where = `migrations[${i}]`;
    for (const side of ["from", "to"] as const) {
      if (typeof raw[side] === "string" && !known(raw[side])) {
        problems.push(`${where}.${side}: shard ${quoted(raw[side])} is not in shards`);
      }
    }
    if (typeof raw.from === "string" && raw.from === raw.to) {
      problems.push(`${where}: from and to are the same shard ${quoted(raw.from)}`);
    }
    if (typeof raw.id === "string") {
      if (ids.has(raw.id)) problems.push(`${where}.id: ${quoted(raw.id)} is used twice`);
      ids.add(raw.id);
    }
    if (typeof raw.command !== "string" || typeof raw.state !== "string") return;
    const m = raw as unknown as Migration;
    if (!isUnfinished(m)) return;
    const queue = migrationQueue(m);
    // New enqueues go where the queue is routed; a move onto another shard would leave
    // them behind on a shard that drops out of queueShards when the move ends.
    const owner = routed?.(m.command, typeof m.tenant === "string" ? m.tenant : undefined);
    const onto = fillingSide(m);
    if (owner !== undefined && typeof onto === "string" && owner !== onto) {
      problems.push(
        `${where}: queue ${quoted(queue)} is routed to shard ${quoted(owner)}, but this ${m.state} migration moves it onto ${quoted(onto)}; route it to ${quoted(onto)} or end the migration`,
      );
    }
    const earlier = runningByQueue.get(queue);
    if (earlier !== undefined) {
      problems.push(
        `${where}: queue ${quoted(queue)} already has an unfinished migration (migrations[${earlier}]); at most one may run per queue`,
      );
    } else runningByQueue.set(queue, i);
    (m.tenant === undefined ? wholeCommand : perTenant).set(m.command, i);
  });
  // A command-wide move and a tenant's move of the same command overlap: a tenant that
  // gains an override mid-move would stop seeing the shard the command moves off.
  for (const [command, i] of perTenant) {
    const j = wholeCommand.get(command);
    if (j !== undefined) {
      problems.push(
        `migrations[${Math.max(i, j)}]: command ${quoted(command)} has unfinished migrations of the whole command (migrations[${j}]) and of one tenant (migrations[${i}]); finish one first`,
      );
    }
  }
  return problems;
}
