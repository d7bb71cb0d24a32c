import { ShardState } from "@codeq/proto";
import { expectPositionals, str } from "../args";
import type { Command } from "../command";
import { ExitCode, UsageError } from "../errors";
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

/** `codeq shard remove ID [--lost [--to SHARD]]`: RemoveShard. */
export const shardRemoveCommand: Command = {
  name: "shard remove",
  group: "admin",
  args: "ID [--lost [--to SHARD]]",
  summary: "remove an empty, unused shard from the map, or one lost for good (RemoveShard)",
  details: [
    "Refused (FAILED_PRECONDITION) while it is the default shard, a command or tenant",
    "is assigned to it, a migration involves it, or it holds tasks: move them first.",
    "",
    "--lost gives up a shard whose store is gone for good, and what it held: only while",
    "its worker (or its store) does not answer. In one change of the map, the queues",
    "routed to it (the default too) go to --to; each migration involving it ends",
    "ABANDONED, its queue on the other shard of the move; the shard leaves the map.",
  ],
  options: {
    lost: { type: "boolean", description: "the shard is gone for good: give up what it held" },
    to: { type: "string", description: "with --lost: the shard its queues go to" },
  },
  async run({ positionals, values, clients, global, io }) {
    expectPositionals(positionals, ["ID"]);
    const id = positionals[0]!;
    const reassignTo = str(values, "to") ?? "";
    if (reassignTo && !values.lost) throw new UsageError("--to goes with --lost");
    const res = await clients.admin.removeShard(
      { id, lost: values.lost === true, reassignTo },
      clients.call(),
    );
    if (global.json) io.out(toJson(res));
    else if (values.lost)
      io.out(
        `shard ${id} removed as lost${reassignTo ? `; its queues are on ${reassignTo}` : ""}; map version ${res.mapVersion} (codeq migrations --all shows any move it ended, ABANDONED)`,
      );
    else io.out(`shard ${id} removed; map version ${res.mapVersion}`);
    return ExitCode.OK;
  },
};
