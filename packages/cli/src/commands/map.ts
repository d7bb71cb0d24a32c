import { shardStateToJSON } from "@codeq/proto";
import { expectPositionals } from "../args";
import type { Command } from "../command";
import { ExitCode } from "../errors";
import { shortEnum, time } from "../format";
import { shardMapJson, toJson } from "../json";
import { formatTable } from "../table";
import { migrationTable } from "./migrations";

/** `codeq map`: the shard map the router serves. */
export const mapCommand: Command = {
  name: "map",
  group: "admin",
  args: "",
  summary: "show the shard map: version, default shard, shards, assignments, migrations",
  details: [
    "The map as the answering router holds it; STALE means the router cannot reach",
    "the control store and serves the last good map.",
  ],
  options: {},
  async run({ positionals, clients, global, io }) {
    expectPositionals(positionals, []);
    const res = await clients.admin.getShardMap({}, clients.call());
    if (global.json) {
      io.out(toJson({ ...res, map: res.map && shardMapJson(res.map) }));
      return ExitCode.OK;
    }
    const map = res.map;
    if (!map) {
      io.out("the router answered without a map");
      return ExitCode.OK;
    }
    io.out(
      `version ${map.version}${res.stale ? " (STALE: the control store is unreachable)" : ""}` +
        `, updated ${time(map.updatedAtMs)}, loaded ${time(res.loadedAtMs)}`,
    );
    io.out(`default shard ${map.defaultShard}`);
    if (map.formerDefault)
      io.out(
        `  (the change from ${map.formerDefault} is not finished: it is read for the default's queues too; codeq shard default ${map.defaultShard} finishes it)`,
      );
    io.out("");
    const shards = map.shards.map((s) => [
      s.id,
      s.endpoint,
      shortEnum(shardStateToJSON(s.state), "SHARD_STATE_"),
    ]);
    for (const line of formatTable(["SHARD", "ENDPOINT", "STATE"], shards)) io.out(line);
    io.out("");
    if (map.assignments.length === 0) io.out("no assignments: every queue is on the default shard");
    else {
      const rows = map.assignments.map((a) => [a.command, a.tenant || "(all)", a.shard]);
      for (const line of formatTable(["COMMAND", "TENANT", "SHARD"], rows)) io.out(line);
    }
    io.out("");
    if (map.migrations.length === 0) io.out("no migrations running");
    else for (const line of migrationTable(map.migrations)) io.out(line);
    return ExitCode.OK;
  },
};
