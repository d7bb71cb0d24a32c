import { fork, type ChildProcess } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import {
  GcTally,
  gcPausesSince,
  installLeanAsyncBind,
  NO_GC_PAUSES,
  type GcPauses,
} from "@codeq/common";
import { serviceNodeFlags } from "@codeq/local-cluster";

/**
 * The clients of a latency variant in a process of their own, forked from the bench,
 * as a real producer or caller is. The bench process has just run the throughput
 * phases: after them V8 allocates the clients' per-message objects straight in the
 * old generation, and its pauses (scavenges of 6–11 ms) were as large a part of a
 * measured tail as the service's (docs/performance.md, "Garbage collection settings").
 * A fresh process has seen nothing but its own workload; it needs a few seconds of it
 * before its code is compiled, which is why such variants warm up longer. It runs
 * with the services' V8 settings (`serviceNodeFlags`): with Node's default young
 * generation its own scavenges paused twice as long, and a client's pause is in the
 * latency it measures (docs/performance.md, session 11).
 *
 * Protocol (IPC): the parent sends `{ window: boolean }` as the measured window opens
 * and closes, then `{ stop: true }`; the child reports its running counts every
 * REPORT_MS, `{ failure }` on the first error, and `{ counts, result, gc }` once
 * stopped (`gc`: its own GC pauses while the window was open), then exits.
 */
type ToForkedClient = { window: boolean } | { stop: true };
type FromForkedClient<R> =
  { counts: number[] } | { failure: string } | { counts: number[]; result: R; gc: GcPauses };

/** How often the child's counts go to the parent (rates are read from them), ms. */
const REPORT_MS = 20;
/** How long a stopped client may take to finish its calls and report, ms. */
const STOP_MS = 30_000;

/** The parent's handle on one forked client. */
export class ForkedClient<R> {
  private counts: readonly number[] = [];
  private failure: string | undefined;
  private result: { r: R; gc: GcPauses } | undefined;
  private stopping = false;
  private readonly exited: Promise<void>;
  private readonly disconnected: Promise<void>;

  private constructor(private readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
    // every message the child sent has been emitted once its channel closes
    this.disconnected = new Promise((resolve) =>
      child.once("disconnect", () => setImmediate(resolve)),
    );
    child.on("message", (m: FromForkedClient<R>) => {
      if ("failure" in m) this.failure ??= m.failure;
      else {
        this.counts = m.counts;
        if ("result" in m) this.result = { r: m.result, gc: m.gc };
      }
    });
    // a send to a child that is gone fails here, not as an uncaught exception
    child.on("error", (err) => (this.failure ??= err.message));
    void Promise.all([this.exited, this.disconnected]).then(() => {
      if (!this.stopping && this.result === undefined)
        this.failure ??= `exited early (code ${child.exitCode}, signal ${child.signalCode})`;
    });
  }

  /**
   * Forks `file` (a module that calls `runForkedClient` when it is the main module)
   * with `config`; the child runs with the bench's node flags and the services' V8
   * settings.
   */
  static start<C, R>(file: string, config: C): ForkedClient<R> {
    const execArgv = [...process.execArgv, ...serviceNodeFlags()];
    return new ForkedClient(fork(file, [JSON.stringify(config)], { stdio: "inherit", execArgv }));
  }

  /** The child's PID while it runs (for its CPU). */
  get pid(): number | undefined {
    return this.child.exitCode === null ? this.child.pid : undefined;
  }

  /** Count `i` as last reported (0 before the first report). */
  count(i = 0): number {
    return this.counts[i] ?? 0;
  }

  /** Tells the client whether its samples count (the measured window is open). */
  window(open: boolean): void {
    this.send({ window: open });
  }

  /** Throws the client's first failure, or that it exited before it was stopped. */
  check(): void {
    if (this.failure !== undefined) throw new Error(`forked client: ${this.failure}`);
  }

  /**
   * Stops the client, waits until it has finished (STOP_MS at most: a client stuck on a
   * call fails the variant rather than hanging the run), and returns what it measured.
   */
  async stop(): Promise<R> {
    this.stopping = true;
    this.send({ stop: true });
    const late = setTimeout(() => (this.failure ??= `did not stop within ${STOP_MS} ms`), STOP_MS);
    await Promise.race([this.disconnected, sleep(STOP_MS)]).finally(() => clearTimeout(late));
    this.check();
    if (!this.result) throw new Error("forked client exited without its result");
    return this.result.r;
  }

  /** The client's own GC pauses while the window was open (known once it has stopped). */
  get gcInWindow(): GcPauses | undefined {
    return this.result?.gc;
  }

  /** Kills the process if it is still running (after a failure) and waits for it. */
  async close(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill();
    await this.exited;
  }

  private send(m: ToForkedClient): void {
    if (this.child.connected) this.child.send(m);
  }
}

/** What a forked client's body sees of its parent. */
export interface ForkedClientIo {
  /** Whether the measured window is open now. */
  readonly open: boolean;
  /** Whether the parent has asked it to stop. */
  readonly stopping: boolean;
  /** Resolves after REPORT_MS, or at once when the parent asks to stop. */
  tick(): Promise<void>;
  /** What to report as the running counts (none until set). */
  counts: () => number[];
}

/**
 * The child's side: runs `body` with the config the parent passed, sends `io.counts()`
 * every REPORT_MS, then what `body` returned (or its failure), and exits. `body`
 * runs until `io.stopping`, checking its own work at each `io.tick()`.
 */
export function runForkedClient<C, R>(body: (config: C, io: ForkedClientIo) => Promise<R>): void {
  installLeanAsyncBind(); // as the bench process and the services (async-bind.ts)
  const gc = new GcTally();
  let opened = NO_GC_PAUSES;
  let inWindow = NO_GC_PAUSES;
  const config = JSON.parse(process.argv[2]!) as C;
  const send = (m: FromForkedClient<R>) => process.send!(m);
  let wake: (() => void) | undefined;
  const io: ForkedClientIo = {
    open: false,
    stopping: false,
    tick: async () => {
      if (!io.stopping)
        await Promise.race([sleep(REPORT_MS), new Promise<void>((r) => (wake = r))]);
    },
    counts: () => [],
  };
  const state = io as { open: boolean; stopping: boolean };
  process.on("message", (m: ToForkedClient) => {
    if ("window" in m) {
      state.open = m.window;
      if (m.window) opened = gc.totals;
      else inWindow = gcPausesSince(opened, gc.totals);
    } else {
      state.stopping = true;
      wake?.();
    }
  });
  const reports = setInterval(() => send({ counts: io.counts() }), REPORT_MS);
  void (async () => {
    let last: FromForkedClient<R>;
    try {
      const result = await body(config, io);
      last = { counts: io.counts(), result, gc: inWindow };
    } catch (err) {
      last = { failure: err instanceof Error ? (err.stack ?? err.message) : String(err) };
    } finally {
      clearInterval(reports);
    }
    // the last message must reach the parent before the channel closes
    process.send!(last, () => process.disconnect());
  })();
}
