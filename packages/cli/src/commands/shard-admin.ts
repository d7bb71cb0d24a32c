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

/** `codeq shard default ID [--dry-run]`: SetDefaultShard. */
export const shardDefaultCommand: Command = {
  name: "shard default",
  group: "admin",
  args: "ID [--dry-run]",
  summary: "make a shard the default, where commands with no mapping go (SetDefaultShard)",
  details: [
    "The queues the current default holds stay there: each command of which it stores",
    "tasks is mapped to it in the same change (listed as pinned); only commands it holds",
    "nothing of go to the new default. Move the pinned ones with codeq assign.",
    "Refused (FAILED_PRECONDITION) while a migration is unfinished, when the shard is not",
    "ACTIVE or its worker does not serve, and when the current default's worker does not",
    "answer. --dry-run lists what would be pinned and changes nothing. Exit code 5 when",
    "the change is not finished yet (the former default's worker did not confirm the",
    "map): the former default stays read meanwhile; its worker finishes the change on",
    "its own within seconds of having the map, or run the same command again.",
  ],
  options: {
    "dry-run": { type: "boolean", description: "say what would be pinned; change nothing" },
  },
  async run({ positionals, values, clients, global, io }) {
    expectPositionals(positionals, ["ID"]);
    const shard = positionals[0]!;
    const dryRun = values["dry-run"] === true;
    const res = await clients.admin.setDefaultShard({ shard, dryRun }, clients.call());
    if (global.json) {
      io.out(toJson(res));
      return res.finished || dryRun ? ExitCode.OK : ExitCode.INCONSISTENT;
    }
    const pinned = res.pinned.length ? res.pinned.join(", ") : "none";
    if (dryRun) {
      io.out(
        `dry run: the default would go ${res.previous} → ${shard}; pinned to ${res.previous}: ${pinned}`,
      );
      return ExitCode.OK;
    }
    if (res.previous === shard) {
      io.out(`shard ${shard} is the default already; map version ${res.mapVersion}`);
      return ExitCode.OK;
    }
    io.out(`default shard ${res.previous} → ${shard}; map version ${res.mapVersion}`);
    io.out(`pinned to ${res.previous} (their queues stay there): ${pinned}`);
    for (const m of res.migrations)
      io.out(
        `moving ${m.command} ${m.fromShard} → ${m.toShard} (${m.id}): enqueued on ${m.fromShard} as the change spread`,
      );
    if (res.finished) return ExitCode.OK;
    io.err(
      `the change is not finished (shard ${res.previous}'s worker did not confirm the new map, or could not say what it holds): it stays read for the queues that follow the default until its worker finishes the change on its own; run codeq shard default ${shard} again to finish it now`,
    );
    return ExitCode.INCONSISTENT;
  },
};

/** `codeq shard state ID active|draining`: SetShardState. */
export const shardStateCommand: Command = {
  name: "shard state",
  group: "admin",
  args: "ID active|draining",
  summary: "set a shard ACTIVE or DRAINING (SetShardState); a draining one takes no new queues",
  details: [
    "A DRAINING shard serves what it holds; assignments onto it are refused (among the",
    "shards a queue moves off, leases read it first). The default shard cannot be set",
    "DRAINING: make another the default first (codeq shard default).",
  ],
  options: {},
  async run({ positionals, clients, global, io }) {
    expectPositionals(positionals, ["ID", "STATE"]);
    const [id, wanted] = positionals as [string, string];
    const state =
      wanted === "active"
        ? ShardState.SHARD_STATE_ACTIVE
        : wanted === "draining"
          ? ShardState.SHARD_STATE_DRAINING
          : undefined;
    if (state === undefined)
      throw new UsageError(`STATE must be active or draining, got ${wanted}`);
    const res = await clients.admin.setShardState({ id, state }, clients.call());
    if (global.json) io.out(toJson(res));
    else io.out(`shard ${id} is ${wanted}; map version ${res.mapVersion}`);
    return ExitCode.OK;
  },
};
