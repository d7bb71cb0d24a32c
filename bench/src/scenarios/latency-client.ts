import type { LeasedTask } from "@codeq/proto";
import { ForkedClient, runForkedClient, type ForkedClientIo } from "./forked-client";
import { roundRobinClients } from "./grpc-rig";
import { PacedProducer, sinceSent, withStreams, type Producer } from "./grpc-workloads";

/**
 * The clients of one `shard` enqueue→delivery variant (its producer and stream workers)
 * in a process of their own (forked-client.ts says why). Count 0 is the tasks
 * delivered so far; the result is the enqueue→delivery latency of every task delivered
 * while the window was open, ms.
 */
export interface LatencyClientConfig {
  readonly address: string;
  readonly command: string;
  readonly batch: number;
  readonly intervalMs: number;
  readonly via: Producer;
}

/** Forks this file with `config`. */
export function startLatencyClient(config: LatencyClientConfig): ForkedClient<number[]> {
  return ForkedClient.start(__filename, config);
}

async function main(config: LatencyClientConfig, io: ForkedClientIo): Promise<number[]> {
  const rig = roundRobinClients({ address: config.address });
  const samples: number[] = [];
  let delivered = 0;
  io.counts = () => [delivered];
  const onTasks = (pushed: LeasedTask[]) => {
    const now = performance.now();
    delivered += pushed.length;
    if (io.open) for (const t of pushed) samples.push(sinceSent(t, now));
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
        while (!io.stopping) {
          failed();
          producer.check();
          await io.tick();
        }
      } finally {
        await producer.stop();
      }
    });
    return samples;
  } finally {
    rig.close();
  }
}

if (require.main === module) runForkedClient(main);
