import * as fs from "node:fs";
import { ClientError } from "nice-grpc";
import { taskStateToJSON, type EnqueueRequest, type EnqueueResult } from "@codeq/proto";
import { expectPositionals, int, str, type Values } from "../args";
import type { Command } from "../command";
import { ExitCode, isUnreachable, statusName, UsageError } from "../errors";
import { toJson } from "../json";

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
  args: "COMMAND [--payload STR | --payload-file F] [--count N] [--priority P] [--delay MS] [--key K]",
  summary: "enqueue tasks and print their ids (Enqueue, EnqueueBatch)",
  details: [
    "Enqueues as the stated tenant (--tenant). One id a line on stdout; a duplicate",
    "(an idempotency key seen before) is noted on stderr. With --count, batches of",
    `up to ${BATCH} (fewer with large payloads: about 8 MiB a batch); items that failed are`,
    "listed on stderr (exit 2, or 3 when a shard was unavailable).",
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
  async run({ positionals, values, clients, global, io }) {
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
      const res = await clients.queue.enqueue(task, clients.call());
      if (global.json) io.out(toJson({ ...res, state: taskStateToJSON(res.state) }));
      else {
        io.out(res.taskId);
        if (res.duplicate) io.err(`${res.taskId}: duplicate of a task enqueued before`);
      }
      return ExitCode.OK;
    }

    const results: EnqueueResult[] = [];
    // a call that fails after others stored tasks: those are still printed, and the
    // error says how many (run again, the command would store them twice)
    let failure: unknown;
    const perBatch = Math.max(
      1,
      Math.min(BATCH, Math.floor(BATCH_BYTES / (task.payload!.length + TASK_OVERHEAD_BYTES))),
    );
    for (let sent = 0; sent < count && failure === undefined; sent += perBatch) {
      const n = Math.min(perBatch, count - sent);
      const tasks = Array.from({ length: n }, () => task);
      await clients.queue
        .enqueueBatch({ tasks }, clients.call())
        .then((res) => results.push(...res.results))
        .catch((err: unknown) => (failure = err));
    }
    const stored = results.filter((r) => (r.status?.code ?? 0) === 0).length;
    if (failure !== undefined && (stored === 0 || !(failure instanceof ClientError))) throw failure;
    let code: number = ExitCode.OK;
    if (global.json) io.out(toJson({ results: results.map(resultJson) }));
    results.forEach((r, i) => {
      const status = r.status?.code ?? 0;
      if (status === 0) {
        if (!global.json) io.out(r.taskId);
        return;
      }
      io.err(`item ${i}: ${statusName(status)}: ${r.status?.message ?? ""}`);
      if (isUnreachable(status)) code = ExitCode.UNAVAILABLE;
      else if (code === ExitCode.OK) code = ExitCode.REFUSED;
    });
    if (failure instanceof ClientError)
      throw new ClientError(
        failure.path,
        failure.code,
        `${failure.details} (after ${stored} of ${count} enqueued: their ids are printed)`,
      );
    return code;
  },
};
