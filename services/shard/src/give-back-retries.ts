/** A give-back (or release) the store failed is tried again this often while it keeps failing, ms. */
const GIVE_BACK_RETRY_MS = 1_000;
/** Leases kept for a retry, at most (past it the oldest are left to expire). */
const MAX_UNRETURNED = 10_000;

/** A lease to hand back once the store answers: given back, or released (`release`). */
export interface Unreturned {
  readonly token: string;
  readonly release?: { readonly reason: string; readonly counted: boolean };
}

/** The store calls that hand leases back (QueueCore's), each throwing when the store fails. */
export interface HandBackCalls {
  giveBack(tokens: readonly string[]): Promise<void>;
  release(tokens: readonly string[], reason: string, counted: boolean): Promise<void>;
}

/**
 * Leases whose give-back (no worker got them) or release (a closed stream's) the store
 * failed: tried again every GIVE_BACK_RETRY_MS (`retryGiveBacks`) until the store
 * answers, `maxBatch` at a time.
 */
export class GiveBackRetries {
  private unreturned: Unreturned[] = [];
  private retryTimer: NodeJS.Timeout | undefined;
  private retrying = false;
  /** Shutdown: nothing is kept for a retry any more. */
  private stopped = false;

  constructor(
    private readonly calls: HandBackCalls,
    private readonly maxBatch: number,
  ) {}

  /** Keeps `leases` for `retryGiveBacks`, the newest MAX_UNRETURNED at most. */
  keep(leases: readonly Unreturned[], first = false): void {
    if (this.stopped) return;
    if (first) this.unreturned.unshift(...leases);
    else this.unreturned.push(...leases);
    if (this.unreturned.length > MAX_UNRETURNED)
      this.unreturned.splice(0, this.unreturned.length - MAX_UNRETURNED);
    this.retryTimer ??= setInterval(() => void this.retryGiveBacks(), GIVE_BACK_RETRY_MS);
    this.retryTimer.unref();
  }

  /** Gives back (or releases) what failed before, a batch at a time, until the store fails again. */
  private async retryGiveBacks(): Promise<void> {
    if (this.retrying) return;
    this.retrying = true;
    try {
      while (this.unreturned.length > 0) {
        const batch = this.unreturned.splice(0, this.maxBatch);
        try {
          await this.handBack(batch);
        } catch {
          return; // still away: the next tick tries again what is left
        }
      }
      clearInterval(this.retryTimer);
      this.retryTimer = undefined;
    } finally {
      this.retrying = false;
    }
  }

  /**
   * Gives back or releases `batch`, each lease as it was kept, a call per kind; when the
   * store fails one, it and the kinds after it are kept for the next try.
   */
  private async handBack(batch: readonly Unreturned[]): Promise<void> {
    const kinds = new Map<string, Unreturned[]>();
    for (const lease of batch) {
      const key = lease.release ? `${lease.release.counted}:${lease.release.reason}` : "";
      const kind = kinds.get(key);
      if (kind) kind.push(lease);
      else kinds.set(key, [lease]);
    }
    const left = [...kinds.values()];
    for (let k = 0; k < left.length; k++) {
      const how = left[k]![0]!.release;
      const tokens = left[k]!.map((l) => l.token);
      try {
        await (how
          ? this.calls.release(tokens, how.reason, how.counted)
          : this.calls.giveBack(tokens));
      } catch (err) {
        this.keep(left.slice(k).flat(), true);
        throw err;
      }
    }
  }

  /** Stops trying give-backs again (shutdown: the store closes; those leases expire). */
  stop(): void {
    this.stopped = true;
    clearInterval(this.retryTimer);
    this.retryTimer = undefined;
    this.unreturned = [];
  }
}
