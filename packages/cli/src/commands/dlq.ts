import { ClientError } from "nice-grpc";
import {
  DEFAULT_REDRIVE_RATE,
  MAX_PURGE_TASKS,
  MAX_REDRIVE_RATE,
  MAX_REDRIVE_TASKS,
} from "@codeq/common";
import type { Task } from "@codeq/proto";
import { expectPositionals, int, list, type OptionSpecs, type Values } from "../args";
import type { Command, CommandContext } from "../command";
import { ExitCode, UsageError } from "../errors";
import { payloadText, time } from "../format";
import { ProgressReporter } from "../progress";
import { taskJson, toJson } from "../json";
import { formatTable } from "../table";

const DLQ_DETAILS = [
  "Acts on the dead-letter queue of the stated tenant (--tenant). States the admin",
  "role, which the dead-letter calls need.",
];

const WALK_DETAILS = [
  "A DLQ larger than one call is walked in calls, with progress on stderr. Ctrl-C",
  "stops before the next call (exit 130) and says how many were done.",
];

/** `codeq dlq list`: the oldest dead tasks. */
export const dlqListCommand: Command = {
  name: "dlq list",
  group: "dlq",
  args: "COMMAND [--limit N]",
  summary: "list dead tasks, oldest first (ListDead)",
  details: DLQ_DETAILS,
  options: {
    limit: { type: "string", value: "N", description: "list at most N tasks (default 100)" },
  },
  async run({ positionals, values, clients, global, io }) {
    expectPositionals(positionals, ["COMMAND"]);
    const command = positionals[0]!;
    const limit = int(values, "limit", { min: 1, max: 1_000_000 }) ?? 100;
    const tasks: Task[] = [];
    const unavailable = new Set<string>();
    let pageToken = "";
    do {
      const pageSize = Math.min(1000, limit - tasks.length);
      const page = await clients.queue.listDead({ command, pageSize, pageToken }, clients.call());
      tasks.push(...page.tasks.slice(0, limit - tasks.length));
      for (const s of page.unavailableShards) unavailable.add(s);
      pageToken = page.nextPageToken;
    } while (pageToken && tasks.length < limit);
    if (global.json) {
      const res = { tasks: tasks.map(taskJson), nextPageToken: pageToken };
      io.out(toJson({ ...res, unavailableShards: [...unavailable] }));
      return unavailable.size > 0 ? ExitCode.INCONSISTENT : ExitCode.OK;
    }
    if (tasks.length === 0) io.out(`no dead tasks of ${command}`);
    else {
      const rows = tasks.map((t) => [
        t.id,
        t.shard,
        t.attempts,
        time(t.updatedAtMs),
        t.lastError.length > 40 ? `${t.lastError.slice(0, 39)}…` : t.lastError,
        payloadText(t.payload, 40),
      ]);
      const headers = ["ID", "SHARD", "ATTEMPTS", "DIED", "LAST ERROR", "PAYLOAD"];
      for (const line of formatTable(headers, rows)) io.out(line);
    }
    // notes on stderr: stdout holds the table alone
    if (pageToken) io.err(`more dead tasks than --limit ${limit}`);
    if (unavailable.size > 0) {
      io.err(`shard ${[...unavailable].join(", ")} did not answer; its dead tasks are missing`);
      return ExitCode.INCONSISTENT;
    }
    return ExitCode.OK;
  },
};

const selectOptions = (what: string): OptionSpecs => ({
  ids: { type: "string", value: "ID,ID", description: `${what} only these dead tasks` },
  max: {
    type: "string",
    value: "N",
    description: `${what} at most N tasks (default: all of them, oldest first)`,
  },
});

interface Pass {
  done: number;
  remaining: number;
  notFound: string[];
  /** Ctrl-C stopped it between two calls. */
  interrupted?: boolean;
}

/** How a walk over the DLQ shows its progress and hears Ctrl-C. */
interface Walk {
  readonly interrupted: AbortSignal;
  /** After a call that another follows: tasks done, and tasks still to do. */
  progress(done: number, left: number): void;
}

/**
 * Calls `step` with batches of at most `perCall` until the budget (--max,
 * default everything) is spent, nothing is left, or a call did nothing. With
 * --ids (at most `maxIds`), those ids, `perCall` to a call. Ctrl-C stops it before
 * the next call (the one under way finishes, so what it did is counted).
 */
async function drain(
  values: Values,
  limits: { perCall: number; maxIds: number },
  walk: Walk,
  step: (req: { taskIds: string[]; maxTasks: number }) => Promise<Pass>,
): Promise<Pass> {
  const { perCall, maxIds } = limits;
  // an id named twice is one task (and may not land in two calls)
  const ids = [...new Set(list(values, "ids"))];
  const max = int(values, "max", { min: 1, max: Number.MAX_SAFE_INTEGER });
  const total: Pass = { done: 0, remaining: 0, notFound: [] };
  // a call that fails after others did something says what they did
  const call = (req: { taskIds: string[]; maxTasks: number }) =>
    step(req).catch((err: unknown) => {
      if (total.done === 0 || !(err instanceof ClientError)) throw err;
      throw new ClientError(err.path, err.code, `${err.details} (after ${total.done} done)`);
    });
  const stopped = () => (total.interrupted = walk.interrupted.aborted);
  if (ids.length > 0) {
    if (ids.length > maxIds) throw new UsageError(`--ids takes at most ${maxIds} ids`);
    // every id named is acted on: a --max beside them would be ignored, or would leave
    // some of the named unnamed without saying which
    if (max !== undefined)
      throw new UsageError("--max goes with the oldest dead tasks, not with --ids: give one");
    for (let i = 0; i < ids.length && !stopped(); i += perCall) {
      if (i > 0) walk.progress(total.done, ids.length - i);
      const taskIds = ids.slice(i, i + perCall);
      const pass = await call({ taskIds, maxTasks: taskIds.length });
      total.done += pass.done;
      total.remaining = pass.remaining;
      total.notFound.push(...pass.notFound);
    }
    return total;
  }
  const budget = max ?? Infinity;
  while (total.done < budget && !stopped()) {
    if (total.done > 0) walk.progress(total.done, Math.min(total.remaining, budget - total.done));
    const pass = await call({ taskIds: [], maxTasks: Math.min(perCall, budget - total.done) });
    total.done += pass.done;
    total.remaining = pass.remaining;
    if (pass.done === 0 || pass.remaining === 0) break;
  }
  return total;
}

/**
 * A Walk for `what` ("redrive", "purge"): progress on stderr (a bar on a terminal,
 * lines otherwise; none with --json) from the second call on.
 */
function walkOf(ctx: CommandContext, what: string): Walk & { finish(): void } {
  const reporter = ctx.global.json ? undefined : new ProgressReporter(ctx.io);
  const started = Date.now();
  // a call may last up to half of --timeout: say at once what Ctrl-C does
  ctx.interrupted.addEventListener(
    "abort",
    () => {
      reporter?.finish();
      ctx.io.err(`stopping after the call under way; Ctrl-C again quits at once`);
    },
    { once: true },
  );
  return {
    interrupted: ctx.interrupted,
    progress(done, left) {
      const seconds = Math.max(0.001, (Date.now() - started) / 1000);
      reporter?.update({
        id: `dlq ${what}`,
        moved: done,
        remaining: left,
        rate: done / seconds,
        state: "RUNNING",
      });
    },
    finish: () => reporter?.finish(),
  };
}

/** Prints what a walk did; a walk Ctrl-C stopped says so and exits 130. */
function finishWalk(ctx: CommandContext, what: string, res: Pass, json: object): number {
  if (ctx.global.json) ctx.io.out(toJson({ ...json, interrupted: res.interrupted === true }));
  else report(ctx.io, what === "redrive" ? "redrove" : "purged", res);
  if (!res.interrupted) return ExitCode.OK;
  ctx.io.err(`interrupted: stopped after ${res.done} tasks; run it again for the rest`);
  return ExitCode.INTERRUPTED;
}

function report(io: { out(l: string): void; err(l: string): void }, what: string, p: Pass): void {
  io.out(`${what} ${p.done} dead tasks; ${p.remaining} remain`);
  if (p.notFound.length > 0) io.err(`not dead tasks of this queue: ${p.notFound.join(", ")}`);
}

/** `codeq dlq redrive`: dead tasks back to READY. */
export const dlqRedriveCommand: Command = {
  name: "dlq redrive",
  group: "dlq",
  args: "COMMAND [--ids a,b] [--max N] [--rate R]",
  summary: "move dead tasks back to READY with attempts reset (RedriveDead)",
  details: [...DLQ_DETAILS, ...WALK_DETAILS],
  interruptible: true,
  options: {
    ...selectOptions("redrive"),
    rate: {
      type: "string",
      value: "R",
      description: `at most R tasks a second, 1..${MAX_REDRIVE_RATE} (default ${DEFAULT_REDRIVE_RATE})`,
    },
  },
  async run(ctx) {
    const { positionals, values, clients, global, io } = ctx;
    expectPositionals(positionals, ["COMMAND"]);
    const command = positionals[0]!;
    const ratePerSecond = int(values, "rate", { min: 1, max: MAX_REDRIVE_RATE }) ?? 0;
    // the shard worker paces each call to the rate, so a call carries what takes at
    // most half of this command's deadline at that rate (a router gives the shard's
    // call as long as its tasks take at the rate)
    const seconds = global.timeoutMs / 2000;
    const perCall = Math.min(
      MAX_REDRIVE_TASKS,
      Math.floor((ratePerSecond || DEFAULT_REDRIVE_RATE) * seconds),
    );
    if (perCall < 1)
      throw new UsageError(
        `--rate ${ratePerSecond} cannot move one task within half of --timeout ${global.timeoutMs} ms; raise either`,
      );
    const walk = walkOf(ctx, "redrive");
    const res = await drain(values, { perCall, maxIds: MAX_REDRIVE_TASKS }, walk, async (req) => {
      const r = await clients.queue.redriveDead({ command, ...req, ratePerSecond }, clients.call());
      return { done: r.redriven, remaining: r.remaining, notFound: r.notFound };
    }).finally(() => walk.finish());
    const { done: redriven, remaining, notFound } = res;
    return finishWalk(ctx, "redrive", res, { redriven, remaining, notFound });
  },
};

/** `codeq dlq purge`: deletes dead tasks for good; needs --yes. */
export const dlqPurgeCommand: Command = {
  name: "dlq purge",
  group: "dlq",
  args: "COMMAND [--ids a,b] [--max N] --yes",
  summary: "delete dead tasks for good (PurgeDead); refuses without --yes",
  details: [...DLQ_DETAILS, ...WALK_DETAILS],
  interruptible: true,
  options: {
    ...selectOptions("purge"),
    yes: { type: "boolean", description: "really delete them" },
  },
  async run(ctx) {
    const { positionals, values, clients, global, io } = ctx;
    expectPositionals(positionals, ["COMMAND"]);
    const command = positionals[0]!;
    if (values.yes !== true)
      throw new UsageError(
        "dlq purge deletes dead tasks for good; add --yes to go ahead",
        "(codeq dlq list shows them first)",
      );
    const walk = walkOf(ctx, "purge");
    const res = await drain(
      values,
      { perCall: MAX_PURGE_TASKS, maxIds: MAX_PURGE_TASKS },
      walk,
      async (req) => {
        const r = await clients.queue.purgeDead({ command, ...req }, clients.call());
        return { done: r.purged, remaining: r.remaining, notFound: r.notFound };
      },
    ).finally(() => walk.finish());
    const { done: purged, remaining, notFound } = res;
    return finishWalk(ctx, "purge", res, { purged, remaining, notFound });
  },
};
