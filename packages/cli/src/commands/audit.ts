import type { AuditEvent } from "@codeq/proto";
import { expectPositionals, int } from "../args";
import type { Command } from "../command";
import { ExitCode } from "../errors";
import { time } from "../format";
import { toJson } from "../json";
import { formatTable } from "../table";

/** `codeq audit`: the newest shard-map changes, who made them and what they changed. */
export const auditCommand: Command = {
  name: "audit",
  group: "admin",
  args: "[--limit N]",
  summary: "list shard-map changes, newest first (ListAuditEvents)",
  details: [
    "Every change of the shard map (assignments, aborts, shards added and removed, a",
    "mover completing a migration) with its author and the map versions before and after.",
    "The control store keeps the newest 10,000.",
  ],
  options: {
    limit: { type: "string", value: "N", description: "list at most N changes (default 20)" },
  },
  async run({ positionals, values, clients, global, io }) {
    expectPositionals(positionals, []);
    const limit = int(values, "limit", { min: 1, max: 10_000 }) ?? 20;
    const events: AuditEvent[] = [];
    let pageToken = "";
    do {
      const pageSize = Math.min(1000, limit - events.length);
      const page = await clients.admin.listAuditEvents({ pageSize, pageToken }, clients.call());
      events.push(...page.events.slice(0, limit - events.length));
      pageToken = page.nextPageToken;
    } while (pageToken && events.length < limit);
    if (global.json) {
      io.out(toJson({ events, nextPageToken: pageToken }));
      return ExitCode.OK;
    }
    if (events.length === 0) io.out("no shard-map changes recorded");
    else {
      const rows = events.map((e) => [
        time(e.atMs),
        e.actor,
        e.action,
        `${e.versionBefore} → ${e.versionAfter}`,
        e.summary,
      ]);
      for (const line of formatTable(["TIME", "ACTOR", "ACTION", "VERSION", "SUMMARY"], rows))
        io.out(line);
    }
    if (pageToken) io.err(`more changes than --limit ${limit}`);
    return ExitCode.OK;
  },
};
