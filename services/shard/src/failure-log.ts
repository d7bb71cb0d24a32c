import { messageOf } from "@codeq/common";
import type { Logger } from "@codeq/server-kit";

/**
 * A failing operation is logged at most this often: a stream's lease or a give-back
 * that keeps failing is retried every second or two for as long as the failure lasts.
 */
export const FAILURE_LOG_EVERY_MS = 10_000;

/**
 * Logs store operations that failed, at most once per FAILURE_LOG_EVERY_MS per
 * operation; each line says how many failures of that operation since the last line
 * were not logged on their own. The first failure after a quiet spell is logged at once.
 */
export class FailureLog {
  /** Per operation: when a failure was last logged, and the failures since. */
  private readonly seen = new Map<string, { loggedAt: number; unlogged: number }>();

  constructor(
    private readonly logger: Logger,
    private readonly everyMs = FAILURE_LOG_EVERY_MS,
    private readonly now: () => number = Date.now,
  ) {}

  failed(operation: string, err: unknown): void {
    const now = this.now();
    const seen = this.seen.get(operation);
    if (seen && now - seen.loggedAt < this.everyMs) {
      seen.unlogged++;
      return;
    }
    this.seen.set(operation, { loggedAt: now, unlogged: 0 });
    this.logger.warn(
      { operation, error: messageOf(err), unlogged: seen?.unlogged ?? 0 },
      "store operation failed",
    );
  }
}
