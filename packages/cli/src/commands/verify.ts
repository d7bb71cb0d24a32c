import type { MigrationSide } from "@codeq/proto";
import { expectPositionals } from "../args";
import type { Command } from "../command";
import { ExitCode } from "../errors";
import { queueLabel } from "../format";
import { migrationJson, toJson } from "../json";
import { formatTable } from "../table";
import { migrationState } from "./migrations";

/** The two sides of a verified migration as table lines. */
export function sideTable(sides: ReadonlyArray<readonly [string, MigrationSide | undefined]>) {
  const rows = sides.map(([role, s]) => {
    const c = s?.answered ? s.counts : undefined;
    return [
      role,
      s?.shard,
      s?.routed ? "yes" : "no",
      c?.ready,
      c?.scheduled,
      c?.leased,
      c?.dead,
      s?.answered ? s.moving : undefined,
      c?.completed,
      s?.answered ? s.unrouted : undefined,
      s?.error,
    ];
  });
  const counts = ["READY", "SCHEDULED", "LEASED", "DEAD", "RESERVED", "COMPLETED", "UNROUTED"];
  return formatTable(["SIDE", "SHARD", "ROUTED", ...counts, "ERROR"], rows);
}

/** `codeq verify ID`: a migration's queue counted on both shards and checked against the map. */
export const verifyCommand: Command = {
  name: "verify",
  group: "admin",
  args: "ID",
  summary: "count a migration's queue on both shards and check it (VerifyMigration)",
  details: [
    "ROUTED says whether routers read the shard for the queue under the current map;",
    "UNROUTED counts tasks (ready, scheduled, leased, dead, reserved by a mover) on a",
    "shard they do not read, which no worker receives: it should be 0. RESERVED tasks",
    "are on their way between the shards. Works on running and finished migrations;",
    "exit code 5 when a check fails or a shard did not answer.",
  ],
  options: {},
  async run({ positionals, clients, global, io }) {
    expectPositionals(positionals, ["ID"]);
    const res = await clients.admin.verifyMigration({ id: positionals[0]! }, clients.call());
    const code = res.consistent ? ExitCode.OK : ExitCode.INCONSISTENT;
    if (global.json) {
      io.out(toJson({ ...res, migration: res.migration && migrationJson(res.migration) }));
      return code;
    }
    const m = res.migration;
    if (m)
      io.out(
        `migration ${m.id} (${queueLabel(m.command, m.tenant)}, ${m.fromShard} → ${m.toShard}) is ` +
          `${migrationState(m)}; counted now, checked against map version ${res.mapVersion}`,
      );
    const sides = [["source", res.source] as const, ["target", res.target] as const];
    for (const line of sideTable(sides)) io.out(line);
    if (res.consistent) io.out("consistent: no task of the queue is where routers do not read it");
    else for (const p of res.problems) io.out(`problem: ${p}`);
    return code;
  },
};
