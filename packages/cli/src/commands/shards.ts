import { breakerStateToJSON, shardStateToJSON } from "@codeq/proto";
import { expectPositionals } from "../args";
import type { Command } from "../command";
import { ExitCode } from "../errors";
import { shortEnum } from "../format";
import { shardStatusJson, toJson } from "../json";
import { formatTable } from "../table";

/** `codeq shards`: every shard with its health, depth, map version and breaker. */
export const shardsCommand: Command = {
  name: "shards",
  group: "admin",
  args: "",
  summary: "list the shards with health, breaker, depth and map version (ListShards)",
  details: ["A shard that did not answer the router in time is listed unhealthy with the reason."],
  options: {},
  async run({ positionals, clients, global, io }) {
    expectPositionals(positionals, []);
    const res = await clients.admin.listShards({}, clients.call());
    if (global.json) {
      io.out(toJson({ shards: res.shards.map(shardStatusJson) }));
      return ExitCode.OK;
    }
    const rows = res.shards.map((s) => [
      s.shard?.id,
      s.shard?.endpoint,
      s.shard && shortEnum(shardStateToJSON(s.shard.state), "SHARD_STATE_"),
      s.healthy,
      shortEnum(breakerStateToJSON(s.breaker), "BREAKER_STATE_"),
      s.queueDepth,
      s.mapVersion,
      s.error,
    ]);
    const headers = ["SHARD", "ENDPOINT", "STATE", "HEALTHY", "BREAKER", "DEPTH", "MAP", "ERROR"];
    for (const line of formatTable(headers, rows)) io.out(line);
    return ExitCode.OK;
  },
};
