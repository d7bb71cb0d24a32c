import { setTimeout as sleep } from "node:timers/promises";
import { ClientError } from "nice-grpc";
import { MigrationState, type AssignCommandResponse, type Migration } from "@codeq/proto";
import { expectPositionals, int, str } from "../args";
import type { Command, CommandContext } from "../command";
import { ExitCode, isUnreachable, UsageError } from "../errors";
import { queueLabel, shortList, taskCount } from "../format";
import { migrationJson, toJson } from "../json";
import { ProgressReporter } from "../progress";
import { formatTable } from "../table";
import { migrationState } from "./migrations";

const POLL_MS = 250;
/** How long polls may fail as unreachable while waiting (a router restarting, or rolled), ms. */
const UNREACHABLE_FOR_MS = 60_000;

const DONE = new Set([
  MigrationState.MIGRATION_STATE_COMPLETED,
  MigrationState.MIGRATION_STATE_ABORTED,
  MigrationState.MIGRATION_STATE_ABANDONED,
]);

export function planLines(res: AssignCommandResponse, tenant: string): string[] {
  const rows = res.plan.map((p) =>
    p.notCounted
      ? [`${p.fromShard} → ${p.toShard}`, "(not counted)", "-", "-", "-", "-"]
      : [
          `${p.fromShard} → ${p.toShard}`,
          tenant ? `${tenant} only` : p.tenants.length > 0 ? shortList(p.tenants) : "(none yet)",
          p.counts?.ready ?? 0,
          p.counts?.scheduled ?? 0,
          p.counts?.leased ?? 0,
          p.counts?.dead ?? 0,
        ],
  );
  const notes = res.plan.flatMap((p) => (p.notCounted ? [`not counted: ${p.notCounted}`] : []));
  return [
    ...formatTable(["FROM → TO", "TENANTS", "READY", "SCHEDULED", "LEASED", "DEAD"], rows),
    ...notes,
  ];
}

/** Polls a migration until it is COMPLETED or ABORTED, showing progress on stderr. */
async function waitFor(ctx: CommandContext, id: string): Promise<Migration> {
  const { clients, io, interrupted } = ctx;
  const progress = new ProgressReporter(io);
  let unreachableSince: number | undefined;
  try {
    for (;;) {
      let m: Migration | undefined;
      try {
        m = (await clients.admin.getMigration({ id }, clients.call())).migration;
        unreachableSince = undefined;
      } catch (err) {
        if (!(err instanceof ClientError && isUnreachable(err.code))) throw err;
        unreachableSince ??= Date.now();
        if (Date.now() - unreachableSince >= UNREACHABLE_FOR_MS)
          throw new ClientError(
            err.path,
            err.code,
            `${err.details} (stopped waiting after ${UNREACHABLE_FOR_MS / 1000} s; migration ${id} goes on: see \`codeq migrations\`)`,
          );
      }
      if (m) {
        progress.update({
          id: m.id,
          moved: taskCount(m.moved),
          remaining: taskCount(m.remaining),
          rate: m.ratePerSecond,
          state: migrationState(m),
          ...(m.lastError ? { lastError: m.lastError } : {}),
        });
        if (DONE.has(m.state)) return m;
      }
      await sleep(POLL_MS, undefined, { signal: interrupted });
    }
  } finally {
    progress.finish();
  }
}

function outcomeLine(m: Migration): string {
  const label = queueLabel(m.command, m.tenant);
  if (m.state === MigrationState.MIGRATION_STATE_ABORTED)
    return `migration ${m.id} ABORTED: ${label} is back on ${m.fromShard}`;
  if (m.state === MigrationState.MIGRATION_STATE_ABANDONED)
    return `migration ${m.id} ABANDONED: shard ${m.lostShard} was removed as lost; ${label} is on ${m.lostShard === m.fromShard ? m.toShard : m.fromShard}`;
  const c = m.moved;
  const detail = c
    ? ` (ready ${c.ready}, scheduled ${c.scheduled}, dead ${c.dead}, leased ${c.leased})` +
      ` and ${c.idempotencyKeys} idempotency keys`
    : "";
  const secs = m.finishedAtMs
    ? ` in ${((m.finishedAtMs - m.startedAtMs) / 1000).toFixed(1)} s`
    : "";
  return `migration ${m.id} COMPLETED: ${label} is on ${m.toShard}; moved ${taskCount(c)} tasks${detail}${secs}`;
}

/** `codeq assign`: routes a command (or one tenant's queue of it) to a shard and moves its tasks. */
export const assignCommand: Command = {
  name: "assign",
  group: "admin",
  args: "COMMAND --to SHARD [--tenant T] [--dry-run] [--wait] [--expected-version N]",
  summary: "assign a command (or one tenant's queue) to a shard and migrate it (AssignCommand)",
  details: [
    "New enqueues go to SHARD at once; a migration moves the ready, scheduled and",
    "dead tasks the previous owner holds (leased ones once settled). Assigning a",
    "queue to the shard that owns it changes nothing.",
    "With --wait, a progress bar (plain lines when stderr is not a terminal) runs",
    "until the migration is COMPLETED (exit 0) or ABORTED (exit 4). Ctrl-C stops",
    "waiting (exit 130); the migration goes on. Ctrl-C before the router answers",
    "cancels the call: a move it had not written yet is not made.",
  ],
  interruptible: true,
  queueTenant: true,
  options: {
    to: { type: "string", value: "SHARD", description: "the target shard (required)" },
    tenant: {
      type: "string",
      value: "T",
      description: "move only tenant T's queue (an override); without it the whole command",
    },
    "dry-run": { type: "boolean", description: "print what would move and change nothing" },
    wait: {
      type: "boolean",
      description: "follow the migration with a progress bar until it ends",
    },
    "expected-version": {
      type: "string",
      value: "N",
      description: "apply only if the map is still at version N (else refused: ABORTED, exit 2)",
    },
  },
  async run(ctx) {
    const { positionals, values, clients, global, io } = ctx;
    expectPositionals(positionals, ["COMMAND"]);
    const command = positionals[0]!;
    const shard = str(values, "to");
    if (!shard) throw new UsageError("missing --to SHARD");
    const dryRun = values["dry-run"] === true;
    const wait = values.wait === true;
    if (dryRun && wait) throw new UsageError("--wait has nothing to wait for with --dry-run");
    // the tenant named on the command line selects a tenant's queue; CODEQ_TENANT does not
    const tenant = global.tenantGiven ? global.tenant : "";
    const expectedVersion = int(values, "expected-version", {
      min: 1,
      max: Number.MAX_SAFE_INTEGER,
    });
    // Ctrl-C before the answer cancels the call: a move the router has not written yet
    // is not made (docs/migration.md)
    const res = await clients.admin.assignCommand(
      { command, tenant, shard, dryRun, expectedVersion: expectedVersion ?? 0 },
      { ...clients.call(), signal: ctx.interrupted },
    );
    const label = queueLabel(command, tenant);

    if (!global.json) {
      if (res.plan.length === 0 && res.migrations.length === 0) {
        io.out(`${label} is already on ${shard}; nothing changed (map version ${res.mapVersion})`);
        return ExitCode.OK;
      }
      // assigned already, by an earlier call whose answer was lost, say: its move runs
      if (res.plan.length === 0)
        io.out(`${label} is already assigned to ${shard} (map version ${res.mapVersion}); moving:`);
      else if (dryRun)
        io.out(`dry run: nothing changed (map version ${res.mapVersion}); the move:`);
      else io.out(`assigned ${label} to ${shard} (map version ${res.mapVersion}); moving:`);
      if (res.plan.length > 0) for (const line of planLines(res, tenant)) io.out(line);
      for (const m of res.migrations)
        io.out(
          `migration ${m.id} ${migrationState(m)}` +
            (wait ? "" : "; follow it with `codeq migrations` (or assign with --wait)"),
        );
    }
    if (!wait || res.migrations.length === 0) {
      if (global.json) io.out(toJson({ ...res, migrations: res.migrations.map(migrationJson) }));
      return ExitCode.OK;
    }

    const finished: Migration[] = [];
    try {
      for (const m of res.migrations) finished.push(await waitFor(ctx, m.id));
    } catch (err) {
      if (!ctx.interrupted.aborted) throw err;
      io.err("stopped waiting; the migration goes on (see `codeq migrations`)");
      return ExitCode.INTERRUPTED;
    }
    if (global.json) io.out(toJson({ ...res, migrations: finished.map(migrationJson) }));
    else for (const m of finished) io.out(outcomeLine(m));
    return finished.every((m) => m.state === MigrationState.MIGRATION_STATE_COMPLETED)
      ? ExitCode.OK
      : ExitCode.MIGRATION_ABORTED;
  },
};
