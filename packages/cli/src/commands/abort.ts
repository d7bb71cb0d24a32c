import { MigrationState } from "@codeq/proto";
import { expectPositionals } from "../args";
import type { Command } from "../command";
import { ExitCode } from "../errors";
import { queueLabel } from "../format";
import { migrationJson, toJson } from "../json";
import { migrationState } from "./migrations";

/** `codeq abort ID`: reverses a running migration. */
export const abortCommand: Command = {
  name: "abort",
  group: "admin",
  args: "ID",
  summary: "abort a running migration: routing goes back, moved tasks move back",
  details: [
    "The migration turns ABORTING and then ABORTED once the moved tasks are back;",
    "follow it with `codeq migrations`. A completed migration cannot be aborted",
    "(FAILED_PRECONDITION): assign the queue back instead. Aborting one that is",
    "aborting or aborted already answers it as it is (exit 0).",
  ],
  options: {},
  async run({ positionals, clients, global, io }) {
    expectPositionals(positionals, ["ID"]);
    const res = await clients.admin.abortMigration({ id: positionals[0]! }, clients.call());
    const m = res.migration;
    if (global.json) io.out(toJson({ migration: m && migrationJson(m) }));
    else if (m)
      io.out(
        `migration ${m.id} (${queueLabel(m.command, m.tenant)}) is ${migrationState(m)}: ` +
          `routing is back on ${m.fromShard}; ` +
          (m.state === MigrationState.MIGRATION_STATE_ABORTED
            ? `tasks moved to ${m.toShard} are back`
            : `tasks moved to ${m.toShard} move back`),
      );
    return ExitCode.OK;
  },
};
