import { PAYLOAD, paced } from "./grpc-workloads";
import type { QueueServiceClient } from "@codeq/proto";

/**
 * One-task Enqueues at `rate` per second on each of two paths (direct to a shard
 * worker, then via a router), open loop (`paced`): every 1000/rate ms a pair, one call
 * on each path, started together, so that both meet the same moments of the machine
 * and each pair's difference is what the second path added to that call. Which call
 * is started first alternates from pair to pair, so neither path always pays for the
 * other's start. Only pairs sent while `counting()` says so count.
 */
export class PairedEnqueues {
  /** Per path: calls answered so far. */
  readonly answered: [number, number] = [0, 0];
  /** Per path, per counted pair: send → answer, ms. */
  readonly latencies: [number[], number[]] = [[], []];
  private failure: { err: unknown } | undefined;
  private stopped = false;
  /** Pairs sent so far. */
  private pairs = 0;
  private inFlight = 0;
  private drained: (() => void) | undefined;
  private readonly done: Promise<void>;

  constructor(
    private readonly rigs: readonly [
      { client(): QueueServiceClient },
      { client(): QueueServiceClient },
    ],
    private readonly commands: readonly [string, string],
    rate: number,
    /** Whether a pair sent now counts (the measured window is open). */
    private readonly counting: () => boolean,
  ) {
    this.done = paced(
      1000 / rate,
      () => this.sendPair(),
      () => this.stopped,
    );
  }

  private sendPair(): void {
    const pair = this.counting() ? this.latencies[0].push(NaN) - 1 : -1;
    if (pair >= 0) this.latencies[1].push(NaN);
    const order = this.pairs++ % 2 === 0 ? ([0, 1] as const) : ([1, 0] as const);
    for (const path of order) {
      const sent = performance.now();
      this.inFlight++;
      this.rigs[path]
        .client()
        .enqueue({ command: this.commands[path], payload: PAYLOAD })
        .then(() => {
          this.answered[path]++;
          if (pair >= 0) this.latencies[path][pair] = performance.now() - sent;
        })
        .catch((err: unknown) => (this.failure ??= { err }))
        .finally(() => {
          if (--this.inFlight === 0) this.drained?.();
        });
    }
  }

  /** Throws what the first failed call threw. */
  check(): void {
    if (this.failure) throw this.failure.err;
  }

  /** Stops sending and waits for every answer. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
    if (this.inFlight > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    this.check();
  }
}
