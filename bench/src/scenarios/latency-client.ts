import { fork, type ChildProcess } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import type { LeasedTask } from "@codeq/proto";
import { roundRobinClients } from "./grpc-rig";
import { PacedProducer, sinceSent, withStreams, type Producer } from "./grpc-workloads";

/**
 * The clients of one enqueue→delivery variant in a process of their own, as a real
 * producer and worker are: the `shard` scenario forks this file for each latency
 * variant. Its heap has seen nothing but this workload, whereas the bench process
 * has just run the unary and stream phases, after which V8 allocates the clients'
 * per-message objects straight in the old generation and their garbage collection
 * became as large a part of the measured tail as the shard worker's
 * (docs/performance.md, "Garbage collection settings").
 *
 * Protocol (IPC): the parent sends `{ window: boolean }` as the measured window opens
 * and closes, then `{ stop: true }`; this process reports `{ delivered }` every
 * REPORT_MS, `{ failure }` on the first error, and `{ samples, delivered }` once
 * stopped, then exits.
 */
export interface LatencyClientConfig {
  readonly address: string;
  readonly command: string;
  readonly batch: number;
  readonly intervalMs: number;
  readonly via: Producer;
}

export type ToLatencyClient = { window: boolean } | { stop: true };
export type FromLatencyClient =
  { delivered: number } | { failure: string } | { delivered: number; samples: number[] };

/** The parent's handle on one latency client process. */
export class LatencyClient {
  /** Tasks delivered so far, as last reported. */
  delivered = 0;
  private failure: string | undefined;
  private samples: ((s: number[]) => void) | undefined;
  private readonly exited: Promise<void>;
  private readonly disconnected: Promise<void>;

  private constructor(private readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
    // every message the child sent has been emitted once its channel closes
    this.disconnected = new Promise((resolve) =>
      child.once("disconnect", () => setImmediate(resolve)),
    );
    child.on("message", (m: FromLatencyClient) => {
      if ("failure" in m) this.failure ??= m.failure;
      else {
        this.delivered = m.delivered;
        if ("samples" in m) this.samples?.(m.samples);
      }
    });
  }

  /** Forks this file with `config` (the child runs with the bench's own node flags). */
  static start(config: LatencyClientConfig): LatencyClient {
    return new LatencyClient(fork(__filename, [JSON.stringify(config)], { stdio: "inherit" }));
  }

  get pid(): number | undefined {
    return this.child.exitCode === null ? this.child.pid : undefined;
  }

  /** Tells the client whether samples count (the measured window is open). */
  window(open: boolean): void {
    this.child.send({ window: open } satisfies ToLatencyClient);
  }

  /** Throws the client's first failure. */
  check(): void {
    if (this.failure !== undefined) throw new Error(`latency client: ${this.failure}`);
  }

  /** Stops the producer, waits for every answer, and returns the window's samples. */
  async stop(): Promise<number[]> {
    const samples = new Promise<number[]>((resolve) => (this.samples = resolve));
    this.child.send({ stop: true } satisfies ToLatencyClient);
    const got = await Promise.race([samples, this.disconnected.then(() => undefined)]);
    this.check();
    if (!got) throw new Error("latency client exited without its samples");
    return got;
  }

  /** Kills the process if it is still running (after a failure) and waits for it. */
  async close(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill();
    await this.exited;
  }
}

/** How often the delivered count goes to the parent (its rate reads it). */
const REPORT_MS = 20;

async function main(config: LatencyClientConfig): Promise<void> {
  const send = (m: FromLatencyClient) => process.send!(m);
  const rig = roundRobinClients({ address: config.address });
  const samples: number[] = [];
  let [open, delivered, stop] = [false, 0, false];
  let result: FromLatencyClient;
  process.on("message", (m: ToLatencyClient) => {
    if ("window" in m) open = m.window;
    else stop = true;
  });
  const onTasks = (pushed: LeasedTask[]) => {
    const now = performance.now();
    delivered += pushed.length;
    if (open) for (const t of pushed) samples.push(sinceSent(t, now));
  };
  try {
    await withStreams(rig, config.command, onTasks, async (_, failed) => {
      const producer = new PacedProducer(
        rig,
        config.command,
        config.batch,
        config.intervalMs,
        config.via,
      );
      try {
        while (!stop) {
          failed();
          producer.check();
          send({ delivered });
          await sleep(REPORT_MS);
        }
      } finally {
        await producer.stop();
      }
    });
    result = { delivered, samples };
  } catch (err) {
    result = { failure: err instanceof Error ? (err.stack ?? err.message) : String(err) };
  } finally {
    rig.close();
  }
  // the last message must reach the parent before the channel closes
  process.send!(result, () => process.disconnect());
}

if (require.main === module) {
  void main(JSON.parse(process.argv[2]!) as LatencyClientConfig);
}
