import { z } from "zod";
import { loadConfig } from "@codeq/server-kit";

/** Environment variables: CODEQ_ROUTER_<SETTING>. File: CODEQ_ROUTER_CONFIG_FILE. */
export const ROUTER_ENV_PREFIX = "CODEQ_ROUTER_";

export const routerConfigSchema = z.object({
  /** gRPC listen address for clients; port 0 picks a free port. */
  listen: z.string().default("127.0.0.1:7300"),
  /** The control store holding the shard map (key codeq:ctl:shardmap). */
  controlUrl: z.string().url().default("redis://127.0.0.1:6379"),
  /** How long a graceful shutdown waits for in-flight calls before forcing, in ms. */
  graceMs: z.coerce.number().int().min(0).max(600_000).default(10_000),
});

export type RouterConfig = Readonly<z.infer<typeof routerConfigSchema>>;

/** Reads, validates and freezes the router's configuration. */
export function loadRouterConfig(env: NodeJS.ProcessEnv = process.env): RouterConfig {
  return loadConfig(routerConfigSchema, ROUTER_ENV_PREFIX, env);
}
