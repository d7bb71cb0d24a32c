import { BreakerState, breakerStateToJSON, shardStateToJSON } from "@codeq/proto";
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
  details: [
    "A shard that did not answer the router in time is listed unhealthy with the reason.",
    "With --check, exits 5 when a shard is unhealthy or its breaker is not CLOSED (for",
    "scripts and probes).",
  ],
  options: {
    check: {
      type: "boolean",
      description: "exit 5 when a shard is unhealthy or its breaker is not CLOSED",
    },
  },
  async run({ positionals, values, clients, global, io }) {
    expectPositionals(positionals, []);
    const res = await clients.admin.listShards({}, clients.call());
    const failing = res.shards.filter(
      (s) => !s.healthy || s.breaker !== BreakerState.BREAKER_STATE_CLOSED,
    );
    const code = values.check === true && failing.length > 0 ? ExitCode.INCONSISTENT : ExitCode.OK;
    if (global.json) {
      io.out(toJson({ shards: res.shards.map(shardStatusJson) }));
      return code;
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
    if (code !== ExitCode.OK)
      io.err(`not all shards are well: ${failing.map((s) => s.shard?.id ?? "?").join(", ")}`);
    return code;
  },
};
