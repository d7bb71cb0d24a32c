import * as fs from "node:fs";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";

/** Thrown when configuration is invalid; the message lists every bad setting. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
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
  const result = schema.safeParse({ ...fromFile, ...fromEnv });
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const field = issue.path.join(".");
      const envName = `${prefix}${field.replace(/([A-Z])/g, "_$1").toUpperCase()}`;
      return `  ${envName} (${field}): ${issue.message}`;
    });
    throw new ConfigError(`invalid configuration:\n${problems.join("\n")}`);
  }
  return Object.freeze(result.data) as Readonly<z.infer<S>>;
}
