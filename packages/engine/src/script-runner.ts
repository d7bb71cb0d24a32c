import type { Redis } from "ioredis";
import { scriptSources } from "./script-loader";

export type ScriptArg = string | number | Buffer | Uint8Array;

type Dynamic = Record<string, (...args: unknown[]) => Promise<unknown>>;

/**
 * Runs the engine's scripts on one connection. Each script is defined on the
 * connection once (ioredis sends EVALSHA and falls back to EVAL on NOSCRIPT, as a
 * fresh or restarted KVRocks needs); every call states its KEYS count.
 */
export class ScriptRunner {
  constructor(private readonly redis: Redis) {
    for (const script of scriptSources().values()) {
      if (!(`codeq_${script.operation}` in redis)) {
        redis.defineCommand(`codeq_${script.operation}`, { lua: script.lua });
      }
    }
  }

  /** Runs `operation` with string replies. */
  run<T = unknown>(
    operation: string,
    keys: readonly string[],
    args: readonly ScriptArg[],
  ): Promise<T> {
    const fn = (this.redis as unknown as Dynamic)[`codeq_${operation}`];
    if (!fn) throw new Error(`no script for ${operation}`);
    return fn.call(this.redis, keys.length, ...keys, ...args) as Promise<T>;
  }

  /** Runs `operation` with Buffer replies (for payloads). */
  runBuffer<T = unknown>(
    operation: string,
    keys: readonly string[],
    args: readonly ScriptArg[],
  ): Promise<T> {
    const fn = (this.redis as unknown as Dynamic)[`codeq_${operation}Buffer`];
    if (!fn) throw new Error(`no script for ${operation}`);
    return fn.call(this.redis, keys.length, ...keys, ...args) as Promise<T>;
  }
}
