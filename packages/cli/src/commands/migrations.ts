import { migrationStateToJSON, type Migration } from "@codeq/proto";
import { expectPositionals, str } from "../args";
import type { Command } from "../command";
import { ExitCode } from "../errors";
import { queueLabel, shortEnum, taskCount, time } from "../format";
import { migrationJson, toJson } from "../json";
import { formatTable } from "../table";

/** A migration's state without the enum prefix: COPYING, COMPLETED … */
export const migrationState = (m: Migration) =>
  shortEnum(migrationStateToJSON(m.state), "MIGRATION_STATE_");

/** Migrations as table lines. MOVED and REMAINING count tasks; "-" when no progress is known. */
export function migrationTable(migrations: readonly Migration[]): string[] {
  const rows = migrations.map((m) => [
    m.id,
    queueLabel(m.command, m.tenant),
    `${m.fromShard} → ${m.toShard}`,
    migrationState(m),
    m.moved && taskCount(m.moved),
    m.remaining && taskCount(m.remaining),
    m.moved ? m.ratePerSecond : undefined,
    time(m.startedAtMs),
    time(m.finishedAtMs),
  ]);
  const headers = ["ID", "QUEUE", "FROM → TO", "STATE", "MOVED", "REMAINING", "RATE/S"];
  return formatTable([...headers, "STARTED", "FINISHED"], rows);
}

/** `codeq migrations`: running migrations, or every kept one with --all. */
export const migrationsCommand: Command = {
  name: "migrations",
  group: "admin",
  args: "[--all] [--command C]",
  summary: "list migrations, newest first (ListMigrations)",
  details: ["MOVED and REMAINING count tasks (ready, scheduled, dead and leased)."],
  options: {
    all: { type: "boolean", description: "include COMPLETED and ABORTED migrations" },
    command: { type: "string", value: "C", description: "only migrations of command C" },
  },
  async run({ positionals, values, clients, global, io }) {
    expectPositionals(positionals, []);
    const migrations: Migration[] = [];
    let pageToken = "";
    do {
      const page = await clients.admin.listMigrations(
        {
          includeFinished: values.all === true,
          command: str(values, "command") ?? "",
          pageSize: 1000,
          pageToken,
        },
        clients.call(),
      );
      migrations.push(...page.migrations);
      pageToken = page.nextPageToken;
    } while (pageToken);
    if (global.json) {
      io.out(toJson({ migrations: migrations.map(migrationJson) }));
      return ExitCode.OK;
    }
    if (migrations.length === 0) {
      io.out(values.all ? "no migrations" : "no migrations running (--all shows finished ones)");
      return ExitCode.OK;
    }
    for (const line of migrationTable(migrations)) io.out(line);
    return ExitCode.OK;
  },
};
