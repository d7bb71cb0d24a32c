import { ClientError, Status } from "nice-grpc";
import type { QueueCounts, QueueStatsResponse } from "@codeq/proto";
import type { Command, CommandContext } from "../command";
import { ExitCode } from "../errors";
import { toJson } from "../json";
import { formatTable, type Cell } from "../table";

const counts = (c: QueueCounts | undefined): Cell[] => [
  c?.ready ?? 0,
  c?.scheduled ?? 0,
  c?.leased ?? 0,
  c?.dead ?? 0,
  c?.completed ?? 0,
];

/** Every command the shard map names (mappings, overrides, migrations), sorted. */
async function mappedCommands({ clients }: CommandContext): Promise<string[]> {
  const { map } = await clients.admin.getShardMap({}, clients.call()).catch((err: unknown) => {
    // reading the map is AdminService's: a caller without it names its commands
    if (err instanceof ClientError && err.code === Status.PERMISSION_DENIED)
      throw new ClientError(
        err.path,
        err.code,
        `${err.details} (listing every command reads the shard map, which needs AdminService; name the commands: codeq stats COMMAND...)`,
      );
    throw err;
  });
  const names = new Set<string>();
  for (const a of map?.assignments ?? []) names.add(a.command);
  for (const m of map?.migrations ?? []) names.add(m.command);
  return [...names].sort();
}

/** `codeq stats`: the counts of the caller's queues, per shard. */
export const statsCommand: Command = {
  name: "stats",
  group: "queue",
  args: "[COMMAND...]",
  summary: "count ready, scheduled, leased, dead and completed tasks per shard (QueueStats)",
  details: [
    "Counts the caller's queues. Without COMMAND, every command the shard map names",
    "(queues only on the default shard are not listed; reading the map needs AdminService).",
    "Shards that did not answer are named below the table; the totals are partial then.",
  ],
  options: {},
  async run(ctx) {
    const { positionals, clients, global, io } = ctx;
    const commands = positionals.length > 0 ? [...positionals] : await mappedCommands(ctx);
    const results: Array<{ command: string } & QueueStatsResponse> = [];
    for (const command of commands)
      results.push({ command, ...(await clients.queue.queueStats({ command }, clients.call())) });
    // partial (a shard did not answer): exit 5, in JSON too
    const whole = results.every((r) => r.unavailableShards.length === 0);
    if (global.json) {
      io.out(toJson(results));
      return whole ? ExitCode.OK : ExitCode.INCONSISTENT;
    }
    if (results.length === 0) {
      io.out("the shard map names no commands; name one: codeq stats COMMAND");
      return ExitCode.OK;
    }
    const rows: Cell[][] = [];
    const total = [0, 0, 0, 0, 0];
    for (const r of results) {
      if (r.shards.length === 0) rows.push([r.command, undefined, ...counts(undefined)]);
      for (const s of r.shards) rows.push([r.command, s.shard, ...counts(s.counts)]);
      counts(r.total).forEach((n, i) => (total[i]! += n as number));
    }
    const headers = ["COMMAND", "SHARD", "READY", "SCHEDULED", "LEASED", "DEAD", "COMPLETED"];
    for (const line of formatTable(headers, rows, { footer: ["total", "", ...total] }))
      io.out(line);
    // partial: said on stderr (stdout holds the table alone), and by the exit code
    for (const r of results)
      if (r.unavailableShards.length > 0)
        io.err(
          `${r.command}: shard ${r.unavailableShards.join(", ")} did not answer; its counts are missing`,
        );
    return whole ? ExitCode.OK : ExitCode.INCONSISTENT;
  },
};
