import { ShardState } from "@codeq/proto";
import { expectPositionals } from "../args";
import type { Command } from "../command";
import { ExitCode } from "../errors";
import { toJson } from "../json";

/** `codeq shard add ID ENDPOINT [--draining]`: RegisterShard. */
export const shardAddCommand: Command = {
  name: "shard add",
  group: "admin",
  args: "ID HOST:PORT",
  summary: "add a shard to the map (RegisterShard); ACTIVE unless --draining",
  details: [
    "Start the shard worker first (it waits for the map to name it). ALREADY_EXISTS",
    "for an id in use; INVALID_ARGUMENT for a bad id or endpoint.",
  ],
  options: {
    draining: { type: "boolean", description: "add it DRAINING: it takes no new queues" },
  },
  async run({ positionals, values, clients, global, io }) {
    expectPositionals(positionals, ["ID", "HOST:PORT"]);
    const [id, endpoint] = positionals as [string, string];
    const state = values.draining ? ShardState.SHARD_STATE_DRAINING : ShardState.SHARD_STATE_ACTIVE;
    const res = await clients.admin.registerShard(
      { shard: { id, endpoint, state } },
      clients.call(),
    );
    if (global.json) io.out(toJson(res));
    else io.out(`shard ${id} (${endpoint}) added; map version ${res.mapVersion}`);
    return ExitCode.OK;
  },
};

/** `codeq shard remove ID`: RemoveShard. */
export const shardRemoveCommand: Command = {
  name: "shard remove",
  group: "admin",
  args: "ID",
  summary: "remove an empty, unused shard from the map (RemoveShard)",
  details: [
    "Refused (FAILED_PRECONDITION) while it is the default shard, a command or tenant",
    "is assigned to it, a migration involves it, or it holds tasks: move them first.",
  ],
  options: {},
  async run({ positionals, clients, global, io }) {
    expectPositionals(positionals, ["ID"]);
    const res = await clients.admin.removeShard({ id: positionals[0]! }, clients.call());
    if (global.json) io.out(toJson(res));
    else io.out(`shard ${positionals[0]} removed; map version ${res.mapVersion}`);
    return ExitCode.OK;
  },
};
