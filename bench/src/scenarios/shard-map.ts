import { RedisMapSource } from "@codeq/shardmap";
import { deleteKeys } from "../redis-variant";
import type { ScenarioContext } from "../scenario";

/** Deletes every key of the run's redis-server that starts with `prefix`. */
export async function deleteUnder(ctx: ScenarioContext, prefix: string): Promise<void> {
  const admin = ctx.server.client();
  admin.on("error", () => undefined);
  await deleteKeys(admin, `${prefix}*`).finally(() => admin.disconnect());
}

/**
 * Writes a shard map under `controlPrefix` in the run's redis-server: the shards
 * `endpoints` names (id → address), all active, the first of them the default shard,
 * and `commands` assigned (command → shard id).
 * A crashed run may have left a map (and tasks: scenarios keep their shards' key
 * prefixes under the control prefix), so every key under the prefix goes first.
 */
export async function writeShardMap(
  ctx: ScenarioContext,
  controlPrefix: string,
  endpoints: Readonly<Record<string, string>>,
  commands: Readonly<Record<string, string>> = {},
): Promise<void> {
  const ids = Object.keys(endpoints);
  if (ids.length === 0) throw new Error("a shard map needs a shard");
  await deleteUnder(ctx, controlPrefix);
  const source = new RedisMapSource({ url: ctx.server.url, prefix: controlPrefix });
  await source
    .compareAndSet(
      0,
      {
        shards: Object.fromEntries(
          ids.map((id) => [id, { endpoint: endpoints[id]!, state: "active" as const }]),
        ),
        defaultShard: ids[0]!,
        commands: { ...commands },
        tenants: {},
        migrations: [],
      },
      {
        actor: "bench",
        action: "Bootstrap",
        summary: `shards ${ids.join(", ")}; default ${ids[0]}`,
      },
    )
    .finally(() => source.close());
}
