import type { GlobalOptions, OptionSpecs, Values } from "./args";
import type { RouterClients } from "./clients";

/** Where a command writes: stdout for results, stderr for progress and notes. */
export interface Output {
  out(line: string): void;
  err(line: string): void;
  /** Writes to stderr as is (a progress bar redrawn in place). */
  errRaw(text: string): void;
  /** True when stderr is a terminal (a live progress bar instead of lines). */
  readonly errIsTTY: boolean;
  /** True when stdout is a terminal too (what a command prints shares it with the bar). */
  readonly outIsTTY?: boolean;
}

/** The reason `interrupted` carries when stdout's reader went away (codeq … | head), not Ctrl-C. */
export const STDOUT_CLOSED = "stdout closed";

/** What a running command gets. */
export interface CommandContext {
  readonly global: GlobalOptions;
  readonly values: Values;
  readonly positionals: readonly string[];
  readonly clients: RouterClients;
  readonly io: Output;
  /** Aborted on Ctrl-C (SIGINT) while the command runs. */
  readonly interrupted: AbortSignal;
}

/** One `codeq` command (or subcommand, as "dlq list"). */
export interface Command {
  /** The words that select it. */
  readonly name: string;
  /** Arguments after the name, as in the usage line. */
  readonly args: string;
  /**
   * Its heading in `codeq --help`: AdminService, the dead-letter queue
   * (QueueService calls that need the admin role) or the other QueueService calls.
   */
  readonly group: "admin" | "dlq" | "queue";
  /** One line for the command list. */
  readonly summary: string;
  /** More lines for `codeq NAME --help`. */
  readonly details?: readonly string[];
  readonly options: OptionSpecs;
  /** --tenant names the queue's tenant too (not only the stated identity). */
  readonly queueTenant?: boolean;
  /** Handles Ctrl-C itself through `interrupted` (a second one exits at once); others exit on the first. */
  readonly interruptible?: boolean;
  /**
   * A reader of stdout that goes away (codeq … | head) is taken as Ctrl-C (with reason
   * STDOUT_CLOSED): for a command whose output only reports what it did, which winds
   * down saying so on stderr. Others exit at once (`tail --ack` must not go on acking
   * tasks nobody reads).
   */
  readonly stopsWhenOutputCloses?: boolean;
  /** Runs it; resolves to the exit code. */
  run(ctx: CommandContext): Promise<number>;
}
