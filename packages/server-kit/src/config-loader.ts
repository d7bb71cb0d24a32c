import * as fs from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";

/** Thrown when configuration is invalid; the message lists every bad setting. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** A setting left blank (`CODEQ_X=`, or `x:` in the file) is one not given: its default. */
const blankIsUnset = (v: unknown) => (v === "" || v === null ? undefined : v);

/**
 * An integer setting in [min, max], `fallback` when not given or left blank (a blank
 * would otherwise read as 0: `Number("")`).
 */
export function intSetting(min: number, max: number, fallback: number) {
  return z.preprocess(blankIsUnset, z.coerce.number().int().min(min).max(max).default(fallback));
}

/** A boolean setting ("true"/"false", "1"/"0", "yes"/"no"…), `fallback` when not given or blank. */
export function boolSetting(fallback: boolean) {
  return z.preprocess(blankIsUnset, z.stringbool().or(z.boolean()).default(fallback));
}

/** The environment variable of a setting: `redisUrl` with prefix `CODEQ_SHARD_` → `CODEQ_SHARD_REDIS_URL`. */
function envName(field: string, prefix: string): string {
  return `${prefix}${field.replace(/([A-Z])/g, "_$1").toUpperCase()}`;
}

/** `CODEQ_SHARD_REDIS_URL` with prefix `CODEQ_SHARD_` → `redisUrl`. */
export function envKeyToField(key: string, prefix: string): string {
  return key
    .slice(prefix.length)
    .toLowerCase()
    .replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/**
 * Compiles a service's configuration once: values from the file named by
 * `<prefix>CONFIG_FILE` (YAML or JSON, camelCase keys), overridden by environment
 * variables `<prefix><SNAKE_CASE_KEY>`, validated by the schema (which fills in
 * every default), and frozen.
 */
export function loadConfig<S extends z.ZodType>(
  schema: S,
  prefix: string,
  env: NodeJS.ProcessEnv = process.env,
): Readonly<z.infer<S>> {
  const fileVar = `${prefix}CONFIG_FILE`;
  let fromFile: Record<string, unknown> = {};
  const file = env[fileVar];
  if (file) {
    try {
      const parsed: unknown = parseYaml(fs.readFileSync(file, "utf8"));
      if (parsed !== null && typeof parsed === "object")
        fromFile = parsed as Record<string, unknown>;
      else if (parsed != null) throw new Error("the file must hold a mapping of settings");
    } catch (err) {
      throw new ConfigError(`${fileVar}=${file}: ${(err as Error).message}`);
    }
  }
  const fromEnv: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(env)) {
    if (key.startsWith(prefix) && key !== fileVar && value !== undefined) {
      fromEnv[envKeyToField(key, prefix)] = value;
    }
  }
  let result = schema.safeParse({ ...fromFile, ...fromEnv });
  // an environment variable with the prefix that is no setting (misspelt, or set by
  // someone else: Kubernetes sets <SERVICE>_PORT and the like for a Service of that
  // name) is ignored and said (`ignoredSettings`); in the file, it is an error
  const ignored: string[] = [];
  if (!result.success) {
    for (const issue of result.error.issues) {
      if (issue.code !== "unrecognized_keys" || issue.path.length > 0) continue;
      for (const key of issue.keys) {
        if (!(key in fromEnv) || key in fromFile) continue;
        delete fromEnv[key];
        ignored.push(envName(key, prefix));
      }
    }
    if (ignored.length > 0) result = schema.safeParse({ ...fromFile, ...fromEnv });
  }
  if (!result.success) {
    const problems = result.error.issues.flatMap((issue) => {
      // a misspelt setting would otherwise be ignored, and its default used unsaid
      if (issue.code === "unrecognized_keys")
        return issue.keys.map(
          // only the file's are left here (the environment's were ignored above)
          (key) => `  ${key} in ${fileVar}: not a setting of this service (misspelt?)`,
        );
      const field = issue.path.join(".");
      return [`  ${envName(field, prefix)} (${field}): ${issue.message}`];
    });
    throw new ConfigError(`invalid configuration:\n${problems.join("\n")}`);
  }
  const config = result.data as object;
  Object.defineProperty(config, IGNORED, { value: Object.freeze(ignored) });
  return Object.freeze(config) as Readonly<z.infer<S>>;
}

const IGNORED = Symbol("settings ignored");

/**
 * The environment variables with the service's prefix that `loadConfig` ignored, being
 * no setting of it (to log at start: a misspelt setting would otherwise go unsaid).
 */
export function ignoredSettings(config: object): readonly string[] {
  return (config as { [IGNORED]?: readonly string[] })[IGNORED] ?? [];
}
