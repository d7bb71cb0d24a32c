import { Redis } from "ioredis";
import { redisCpuSeconds } from "./environment";
import { measure, type Cycle } from "./measure";
import type { ScenarioContext, VariantResult } from "./scenario";

/** A variant that loads the run's redis-server through one connection of its own. */
export interface RedisVariant {
  readonly name: string;
  readonly unit: string;
  readonly shape: string;
  readonly concurrency: number;
  /** Prepares the variant on its connection; every key it writes starts with `prefix`. */
  open(redis: Redis, prefix: string): Promise<Cycle>;
}

/**
 * Measures one variant on a fresh connection (`protocol: 2`, as the shard uses),
 * with the server's CPU read on a second one, then deletes every key it wrote.
 */
export async function runRedisVariant(
  ctx: ScenarioContext,
  scenario: string,
  variant: RedisVariant,
): Promise<VariantResult> {
  const prefix = `bench-${scenario}-${variant.name.replace(/\W+/g, "-")}`;
  const redis = new Redis(ctx.server.url, { protocol: 2 });
  const admin = ctx.server.client();
  // Connection errors also fail the pending commands, which is where they are reported;
  // without a listener ioredis prints them again (e.g. when Ctrl-C stops the server).
  for (const connection of [redis, admin]) connection.on("error", () => undefined);
  try {
    const cycle = await variant.open(redis, prefix);
    const m = await measure({
      concurrency: variant.concurrency,
      warmupMs: ctx.options.warmupSeconds * 1000,
      durationMs: ctx.options.seconds * 1000,
      cycle,
      serverCpu: () => redisCpuSeconds(admin),
      progress: (text) => ctx.progress(`${scenario}: ${variant.name}: ${text}`),
    });
    const { name, unit, shape, concurrency } = variant;
    return { name, unit, shape, concurrency, ...m };
  } finally {
    redis.disconnect();
    await deleteKeys(admin, `${prefix}*`).finally(() => admin.disconnect());
  }
}

/** Deletes every key matching `pattern` (SCAN + UNLINK). */
export async function deleteKeys(redis: Redis, pattern: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) await redis.unlink(...keys);
  } while (cursor !== "0");
}
