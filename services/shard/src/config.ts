import { z } from "zod";
import { loadConfig } from "@codeq/server-kit";

/** Environment variables: CODEQ_SHARD_<SETTING>, e.g. CODEQ_SHARD_REDIS_URL. File: CODEQ_SHARD_CONFIG_FILE. */
export const SHARD_ENV_PREFIX = "CODEQ_SHARD_";

export const shardConfigSchema = z.object({
  /** This shard's id in the shard map (^[a-z0-9][a-z0-9-]{0,62}$). */
  id: z
    .string()
    .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, "lower-case letters, digits and '-', at most 63")
    .default("local"),
  /** gRPC listen address; port 0 picks a free port. */
  listen: z.string().default("127.0.0.1:7400"),
  /** The shard's own store (KVRocks in production, redis-server in development). */
  redisUrl: z.string().url().default("redis://127.0.0.1:6379"),
  /** First segment of every storage key (a unique one per test keeps tests apart). */
  keyPrefix: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/)
    .default("codeq"),
  /** How long a graceful shutdown waits for in-flight calls before forcing, in ms. */
  graceMs: z.coerce.number().int().min(0).max(600_000).default(10_000),
  /** How often the store is pinged for the health status, in ms. */
  storeCheckMs: z.coerce.number().int().min(100).max(60_000).default(2_000),
});

export type ShardConfig = Readonly<z.infer<typeof shardConfigSchema>>;

/** Reads, validates and freezes the shard worker's configuration. */
export function loadShardConfig(env: NodeJS.ProcessEnv = process.env): ShardConfig {
  return loadConfig(shardConfigSchema, SHARD_ENV_PREFIX, env);
}
