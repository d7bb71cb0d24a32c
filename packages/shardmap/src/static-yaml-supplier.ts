/**
 * A ShardSupplier from a static YAML file, for deployments without a control
 * store: the map's shape without version and migrations (`state` defaults to
 * active, `commands` and `tenants` to empty). The file is validated strictly at
 * load (unknown fields too) and a bad one throws a ShardMapError naming the file
 * and listing every problem, meant to stop the process with that message.
 */
import * as fs from "node:fs";
import { parseDocument } from "yaml";
import { formatProblems, messageOf, ShardMapError } from "./errors";
import { currentShardOf, queueShardsOf } from "./resolve";
import type { ShardMap } from "./shard-map";
import type { ShardSupplier } from "./supplier";
import { validateShardMap } from "./validate";

/** Fields of a stored map that a static file may not have. */
const NOT_STATIC = ["version", "updatedAtMs", "migrations"] as const;

export class StaticYamlSupplier implements ShardSupplier {
  /** `map` is validated by the loader; version 0, no migrations. */
  constructor(
    readonly map: ShardMap,
    readonly file?: string,
  ) {}

  currentShard(command: string, tenant: string): string {
    return currentShardOf(this.map, command, tenant);
  }

  queueShards(command: string, tenant: string): string[] {
    return queueShardsOf(this.map, command, tenant);
  }
}

/** Reads and validates a static map file. Throws ShardMapError naming `file` and every problem. */
export function loadStaticSupplier(file: string): StaticYamlSupplier {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new ShardMapError(`cannot read static shard map ${file}: ${messageOf(err)}`, {
      cause: err,
    });
  }
  return new StaticYamlSupplier(parseStaticMap(text, file), file);
}

/** Parses and validates the text of a static map file (`file` names it in messages). */
export function parseStaticMap(text: string, file = "(static shard map)"): ShardMap {
  const fail = (problems: string[], cause?: unknown): never => {
    throw new ShardMapError(formatProblems(`invalid static shard map ${file}:`, problems), {
      problems,
      cause,
    });
  };
  // every value of a map is a string: read as written (`007` stays "007", `1e3` "1e3"),
  // not as YAML 1.2's numbers and booleans
  const doc = parseDocument(text, { schema: "failsafe", uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    fail(
      doc.errors.map((e) => `not valid YAML: ${e.message.split("\n")[0]}`),
      doc.errors[0],
    );
  }
  const input: unknown = doc.toJS();
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    return fail(["the file must be a YAML mapping with shards and defaultShard"]);
  }
  const record = input as Record<string, unknown>;
  const problems = NOT_STATIC.filter((key) => key in record).map(
    (key) => `${key}: not allowed in a static map (it has no versions or migrations)`,
  );
  const map = {
    ...withDefaults(record),
    version: 0,
    updatedAtMs: 0,
    migrations: [],
  };
  problems.push(...validateShardMap(map, { strict: true, write: true }));
  if (problems.length > 0) fail(problems);
  return map as unknown as ShardMap;
}

/** YAML's null as the failsafe schema reads it (a string), or a field left out. */
const yamlNull = (value: unknown) =>
  value === undefined || (typeof value === "string" && /^(|~|null|Null|NULL)$/.test(value));

/** Fills the fields a static file may leave out. */
function withDefaults(input: Record<string, unknown>): Record<string, unknown> {
  const shards = input.shards;
  const filled: Record<string, unknown> = { ...input };
  // `commands:` with every entry commented out is YAML's null (an empty scalar, or `~`
  // or `null` written out): read it as empty.
  filled.commands = yamlNull(input.commands) ? {} : input.commands;
  filled.tenants = yamlNull(input.tenants) ? {} : input.tenants;
  if (typeof shards === "object" && shards !== null && !Array.isArray(shards)) {
    filled.shards = Object.fromEntries(
      Object.entries(shards).map(([id, shard]) => [
        id,
        typeof shard === "object" && shard !== null && !Array.isArray(shard)
          ? { state: "active", ...shard }
          : shard,
      ]),
    );
  }
  return filled;
}
