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
  private closes = 0;

  constructor(private readonly redis: Redis) {
    redis.on("close", () => this.closes++);
    for (const script of scriptSources().values()) {
      if (!(`codeq_${script.operation}` in redis)) {
        redis.defineCommand(`codeq_${script.operation}`, { lua: script.lua });
      }
    }
  }

  /**
   * How many times the connection has closed so far. A call during which it changed
   * may have run twice: ioredis sends again what a closed connection left unanswered.
   */
  get connectionEpoch(): number {
    return this.closes;
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
