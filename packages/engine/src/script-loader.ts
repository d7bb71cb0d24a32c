import * as fs from "node:fs";
import * as path from "node:path";

/** Where the `.lua` files live: beside src/ and dist/, so both find them. */
export const LUA_DIR = path.join(__dirname, "..", "lua");

export interface ScriptSource {
  /** File name without extension, e.g. "lease-16". */
  readonly file: string;
  /** The operation, e.g. "lease". */
  readonly operation: string;
  /** Fixed KEYS count from the file name (some scripts take more, listed in their header). */
  readonly fixedKeys: number;
  /** The script with its `-- @include "name"` lines expanded (each include once). */
  readonly lua: string;
}

const INCLUDE = /^-- @include "([a-z0-9-]+)"\s*$/gm;

function expand(source: string, seen: Set<string>): string {
  return source.replace(INCLUDE, (_, name: string) => {
    if (seen.has(name)) return "";
    seen.add(name);
    const file = path.join(LUA_DIR, "includes", `${name}.lua`);
    return expand(fs.readFileSync(file, "utf8"), seen);
  });
}

let cache: Map<string, ScriptSource> | undefined;

/** Every script in lua/, includes expanded, read once per process. */
export function scriptSources(): Map<string, ScriptSource> {
  if (cache) return cache;
  cache = new Map();
  for (const entry of fs.readdirSync(LUA_DIR)) {
    const match = /^([a-z-]+)-(\d+)\.lua$/.exec(entry);
    if (!match) continue;
    const [, operation, keys] = match;
    const lua = expand(fs.readFileSync(path.join(LUA_DIR, entry), "utf8"), new Set());
    cache.set(operation!, {
      file: entry.replace(/\.lua$/, ""),
      operation: operation!,
      fixedKeys: Number(keys),
      lua,
    });
  }
  return cache;
}
