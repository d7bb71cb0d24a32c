import * as fs from "node:fs";
import { ClientError } from "nice-grpc";
import { taskStateToJSON, type EnqueueRequest, type EnqueueResult } from "@codeq/proto";
import { expectPositionals, int, str, type Values } from "../args";
import { STDOUT_CLOSED, type Command, type CommandContext, type Output } from "../command";
import { ExitCode, isUnreachable, statusName, UsageError } from "../errors";
import { toJson } from "../json";
import { ProgressReporter } from "../progress";

const BATCH = 1000;
/**
 * Bytes of payload one batch carries at most: half the router's request limit (16 MiB
 * by default), so a batch of large payloads is sent as several, not refused whole.
 */
const BATCH_BYTES = 8 * 1024 * 1024;
/** What one task adds to a batch besides its payload (command, fields, framing), bytes, at most. */
const TASK_OVERHEAD_BYTES = 512;

function payloadOf(values: Values): Buffer {
  const text = str(values, "payload");
  const file = str(values, "payload-file");
  if (text !== undefined && file !== undefined)
    throw new UsageError("give --payload or --payload-file, not both");
  if (file === undefined) return Buffer.from(text ?? "", "utf8");
  try {
    return fs.readFileSync(file === "-" ? 0 : file);
  } catch (err) {
    throw new UsageError(
      `cannot read --payload-file ${file}: ${(err as Error).message}`,
      "(name a readable file, or - for stdin)",
      {
        cause: err,
      },
    );
  }
}

const resultJson = (r: EnqueueResult) => ({ ...r, state: taskStateToJSON(r.state) });

/** `codeq enqueue`: adds tasks for trying things out; prints their ids. */
export const enqueueCommand: Command = {
  name: "enqueue",
  group: "queue",
  // --count stops after the batch under way (also once its reader goes: codeq … | head)
  interruptible: true,
  stopsWhenOutputCloses: true,
  args: "COMMAND [--payload STR | --payload-file F] [--count N] [--priority P] [--delay MS] [--key K]",
  summary: "enqueue tasks and print their ids (Enqueue, EnqueueBatch)",
  details: [
    "Enqueues as the stated tenant (--tenant). One id a line on stdout; a duplicate",
    "(an idempotency key seen before) is noted on stderr. With --count, batches of",
    `up to ${BATCH} (fewer with large payloads: about 8 MiB a batch), each batch's ids`,
    "printed as it is answered, with progress on stderr; items that failed are listed on",
    "stderr (exit 2, or 3 when a shard was unavailable). Ctrl-C stops after the batch",
    "under way (exit 130).",
  ],
  options: {
    payload: { type: "string", value: "STR", description: "the payload as UTF-8 text" },
    "payload-file": {
      type: "string",
      value: "F",
      description: "the payload read from file F (- for stdin)",
    },
    count: { type: "string", value: "N", description: "enqueue N identical tasks (default 1)" },
    priority: { type: "string", value: "P", description: "0..9, 9 served first (default 0)" },
    delay: { type: "string", value: "MS", description: "ready after MS milliseconds" },
    key: { type: "string", value: "K", description: "idempotency key (only with a count of 1)" },
  },
  async run(ctx) {
    const { positionals, values, clients, global, io } = ctx;
    expectPositionals(positionals, ["COMMAND"]);
    const count = int(values, "count", { min: 1, max: 10_000_000 }) ?? 1;
    const key = str(values, "key");
    if (key !== undefined && count > 1)
      throw new UsageError("--key names one task; it cannot go with --count above 1");
    const task: Partial<EnqueueRequest> = {
      command: positionals[0]!,
      payload: payloadOf(values),
      priority: int(values, "priority", { min: 0, max: 9 }) ?? 0,
      delayMs: int(values, "delay", { min: 0, max: 31_536_000_000 }) ?? 0,
      idempotencyKey: key ?? "",
    };

    if (count === 1) {
      // Ctrl-C cancels the call (exit 130)
      const res = await clients.queue.enqueue(task, { ...clients.call(), signal: ctx.interrupted });
      if (global.json) io.out(toJson({ ...res, state: taskStateToJSON(res.state) }));
      else {
        io.out(res.taskId);
        if (res.duplicate) io.err(`${res.taskId}: duplicate of a task enqueued before`);
      }
      return ExitCode.OK;
    }

    return enqueueMany(ctx, task, count);
  },
};

/** How often the progress of `--count` is redrawn on a terminal, and written as a line otherwise, ms. */
const PROGRESS_TTY_MS = 250;
const PROGRESS_LINE_MS = 5_000;

/**
 * `enqueue --count N`: batch after batch, each batch's ids (or its items' failures)
 * written as its answer comes, so that memory does not grow with N and a failure part
 * way leaves every stored id printed; progress on stderr (not with --json). A call
 * that fails after others stored tasks ends it, and the error says how many were
 * stored (run again, the command would store them twice); Ctrl-C stops it after the
 * batch under way (exit 130).
 */
async function enqueueMany(
  ctx: CommandContext,
  task: Partial<EnqueueRequest>,
  count: number,
): Promise<number> {
  const { clients, global, io, interrupted } = ctx;
  const perBatch = Math.max(
    1,
    Math.min(BATCH, Math.floor(BATCH_BYTES / (task.payload!.length + TASK_OVERHEAD_BYTES))),
  );
  const json = global.json ? new JsonResults(io) : undefined;
  // (ids scrolling on a terminal show the progress: a bar would be drawn among them)
  const progress =
    global.json || count <= perBatch || io.outIsTTY ? undefined : new ProgressReporter(io);
  const stopping = () => {
    progress?.finish();
    if (interrupted.reason !== STDOUT_CLOSED)
      io.err("stopping after the batch under way; Ctrl-C again quits at once");
  };
  interrupted.addEventListener("abort", stopping, { once: true });
  const started = Date.now();
  let shownAt = started;
  let sent = 0;
  let stored = 0;
  let code: number = ExitCode.OK;
  let failure: unknown;
  try {
    while (sent < count && !interrupted.aborted) {
      const n = Math.min(perBatch, count - sent);
      const tasks = Array.from({ length: n }, () => task);
      const res = await clients.queue
        .enqueueBatch({ tasks }, clients.call())
        .catch((err: unknown) => {
          failure = err;
          return undefined;
        });
      if (!res) break;
      res.results.forEach((r, i) => {
        json?.add(resultJson(r));
        const status = r.status?.code ?? 0;
        if (status === 0) {
          stored++;
          if (!json) io.out(r.taskId);
          return;
        }
        io.err(`item ${sent + i}: ${statusName(status)}: ${r.status?.message ?? ""}`);
        if (isUnreachable(status)) code = ExitCode.UNAVAILABLE;
        else if (code === ExitCode.OK) code = ExitCode.REFUSED;
      });
      sent += n;
      const now = Date.now();
      if (progress && now - shownAt >= (io.errIsTTY ? PROGRESS_TTY_MS : PROGRESS_LINE_MS)) {
        shownAt = now;
        progress.update({
          id: "enqueue",
          moved: sent,
          remaining: count - sent,
          rate: sent / Math.max(0.001, (now - started) / 1000),
          state: "RUNNING",
        });
      }
    }
  } finally {
    interrupted.removeEventListener("abort", stopping);
    progress?.finish();
    json?.end(failure === undefined);
  }
  if (failure !== undefined) {
    if (stored === 0 || !(failure instanceof ClientError)) throw failure;
    throw new ClientError(
      failure.path,
      failure.code,
      `${failure.details} (after ${stored} of ${count} enqueued: their ids are printed)`,
    );
  }
  if (sent < count) {
    io.err(
      interrupted.reason === STDOUT_CLOSED
        ? `stdout closed: stopped after ${stored} of ${count} enqueued; run it again for the rest`
        : `interrupted: stopped after ${stored} of ${count} enqueued (their ids are printed); run it again for the rest`,
    );
    return ExitCode.INTERRUPTED;
  }
  return code;
}

/**
 * Writes `{"results": [...]}` as `toJson` would, one item at a time (each written once
 * the next comes, with its comma): nothing until `end`, when no item came.
 */
export class JsonResults {
  private pending: string | undefined;
  private items = 0;

  constructor(private readonly io: Output) {}

  add(item: object): void {
    if (this.items++ === 0) this.io.out('{\n  "results": [');
    else this.io.out(`${this.pending!},`);
    this.pending = toJson(item).replace(/^/gm, "    ");
  }

  /** Closes the list; `empty`: writes an empty one when no item came. */
  end(empty: boolean): void {
    if (this.pending !== undefined) this.io.out(`${this.pending}\n  ]\n}`);
    else if (empty) this.io.out(toJson({ results: [] }));
  }
}
