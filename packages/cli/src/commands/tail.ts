import type { LeaseStreamRequest, LeasedTask } from "@codeq/proto";
import { expectPositionals, int } from "../args";
import type { Command } from "../command";
import { ExitCode, statusName } from "../errors";
import { payloadText } from "../format";
import { leasedTaskJson, toJsonLine } from "../json";

type Request = Partial<LeaseStreamRequest>;

/** The request side of a LeaseStream: messages queued by the caller, ended by close(). */
class Outbox {
  private readonly queue: Request[] = [];
  private wake: (() => void) | undefined;
  private closed = false;

  send(req: Request): void {
    this.queue.push(req);
    this.wake?.();
  }

  /** Ends the request stream (after what is queued): the server ends the stream and releases what is held. */
  close(): void {
    this.closed = true;
    this.wake?.();
  }

  async *messages(): AsyncGenerator<Request> {
    for (;;) {
      const next = this.queue.shift();
      if (next) yield next;
      else if (this.closed) return;
      else await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}

/** `codeq tail`: prints tasks as a LeaseStream pushes them. */
export const tailCommand: Command = {
  name: "tail",
  group: "queue",
  args: "COMMAND... [--ack] [--credits N] [--max N] [--lease MS]",
  summary: "lease tasks over a LeaseStream and print each as it arrives",
  details: [
    "One line a task: id, shard, attempt, payload (text when printable, else b64:…);",
    "with --json one JSON object a line. Leases the caller's tenant's queues.",
    "With --ack each batch is acked as it arrives and its credits are granted again.",
    "Without it the tasks are held (at most --credits of them) and released when",
    "tail stops (Ctrl-C, or after --max tasks). Either way each delivery counts as",
    "an attempt, as for any worker: a task released on its last attempt goes to the",
    "dead-letter queue. tail is a worker, not a look: `stats` counts without leasing.",
  ],
  interruptible: true,
  options: {
    ack: { type: "boolean", description: "ack each task (completing it) after printing it" },
    credits: {
      type: "string",
      value: "N",
      description: "tasks in flight at once (default 10; give at least the shard count)",
    },
    max: { type: "string", value: "N", description: "stop after N tasks" },
    lease: { type: "string", value: "MS", description: "lease duration (default: the server's)" },
  },
  async run({ positionals, values, clients, global, io, interrupted }) {
    expectPositionals(positionals, ["COMMAND..."]);
    const ack = values.ack === true;
    const max = int(values, "max", { min: 1, max: Number.MAX_SAFE_INTEGER }) ?? Infinity;
    const credits = int(values, "credits", { min: 1, max: 10_000 }) ?? 10;
    const leaseDurationMs = int(values, "lease", { min: 1000, max: 43_200_000 }) ?? 0;

    const outbox = new Outbox();
    let granted = Math.min(credits, max);
    let printed = 0;
    let failed = 0;
    let stopping = false;
    let requestId = 0;
    const pending = new Set<number>();
    const stopWhenSettled = () => {
      // acks still on their way are answered first: closing earlier could release them
      if (stopping && pending.size === 0) outbox.close();
    };
    const stop = () => {
      stopping = true;
      stopWhenSettled();
    };
    interrupted.addEventListener("abort", stop, { once: true });

    const print = (t: LeasedTask) => {
      if (global.json) return io.out(toJsonLine(leasedTaskJson(t)));
      const task = t.task;
      const payload = payloadText(task?.payload ?? new Uint8Array());
      io.out(
        `${task?.id ?? "?"}  ${task?.shard ?? "?"}  attempt ${task?.attempts ?? 0}  ${payload}`.trimEnd(),
      );
    };

    outbox.send({
      subscribe: {
        commands: [...positionals],
        leaseDurationMs,
        allTenants: false,
        maxBatch: Math.min(granted, 1000),
      },
      credits: granted,
    });
    if (interrupted.aborted) stop();
    try {
      for await (const res of clients.queue.leaseStream(outbox.messages())) {
        if (res.subscribed && !global.json)
          io.err(
            `tailing ${positionals.join(", ")} as ${global.token === undefined ? `tenant ${global.tenant}` : "the token's tenant"} ` +
              `(lease ${res.subscribed.leaseDurationMs} ms${ack ? ", acking" : ""}); Ctrl-C stops`,
          );
        const tasks = res.tasks?.tasks ?? [];
        if (tasks.length > 0 && !stopping) {
          for (const t of tasks) print(t);
          printed += tasks.length;
          if (ack) {
            const more = Math.max(0, Math.min(tasks.length, max - granted));
            granted += more;
            pending.add(++requestId);
            outbox.send({
              requestId,
              credits: more,
              acks: tasks.map((t) => ({ leaseToken: t.leaseToken, result: new Uint8Array() })),
            });
          } else if (printed >= granted && printed < max && !global.json) {
            io.err(
              `holding ${printed} tasks, all the credits; --ack completes them, Ctrl-C releases them`,
            );
          }
          if (printed >= max) stop();
        }
        if (res.settled) {
          pending.delete(res.settled.requestId);
          for (const s of res.settled.acks)
            if (s.code !== 0) {
              failed++;
              io.err(`ack refused: ${statusName(s.code)}: ${s.message}`);
            }
          stopWhenSettled();
        }
      }
    } finally {
      interrupted.removeEventListener("abort", stop);
      outbox.close();
    }
    if (failed > 0) return ExitCode.REFUSED;
    // stopped by Ctrl-C rather than by --max: a script can tell the two apart
    return interrupted.aborted ? ExitCode.INTERRUPTED : ExitCode.OK;
  },
};
