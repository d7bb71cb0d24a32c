import {
  currentShardOf,
  entry,
  tenantKey,
  type RoutingTable,
  type ShardMapDraft,
} from "@codeq/shardmap";

/** The queue a migration or assignment names, for messages. */
export const label = (command: string, tenant?: string) =>
  tenant ? `${command}/${tenant}` : command;

/**
 * A queue's own routing entry (a tenant override, or a command mapping when `tenant` is
 * unset): its key, the shard it names if there is one, and the shard the queue would
 * follow without it (its command's shard, or the default shard).
 */
export function ownRoute(map: RoutingTable, command: string, tenant?: string) {
  const key = tenant ? tenantKey(command, tenant) : command;
  const own = entry(tenant ? map.tenants : map.commands, key);
  const inherited = tenant ? currentShardOf(map, command) : map.defaultShard;
  return { key, own, inherited };
}

/** `draft` with the queue's own routing entry naming `shard`, or taken away (undefined). */
export function withOwnRoute(
  draft: ShardMapDraft,
  command: string,
  tenant: string | undefined,
  shard: string | undefined,
): ShardMapDraft {
  const { key } = ownRoute(draft, command, tenant);
  const table = tenant ? draft.tenants : draft.commands;
  const { [key]: _own, ...others } = table;
  const routed = shard === undefined ? others : { ...table, [key]: shard };
  return { ...draft, ...(tenant ? { tenants: routed } : { commands: routed }) };
}
