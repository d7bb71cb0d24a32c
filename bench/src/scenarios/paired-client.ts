import { ForkedClient, runForkedClient, type ForkedClientIo } from "./forked-client";
import { roundRobinClients } from "./grpc-rig";
import { PairedEnqueues } from "./paired-enqueues";

/**
 * The `router` scenario's latency pair (PairedEnqueues) in a process of its own
 * (forked-client.ts says why): a GC of the bench process, which has just run the
 * throughput phases, lands in both paths' calls but not in the same place of their
 * distributions, and the check is the difference of two p99s. Counts 0 and 1 are the
 * calls answered on each path; the result is each path's latencies of the pairs sent
 * while the window was open, ms, pair by pair.
 */
export interface PairedClientConfig {
  /** Direct to a shard worker, then via a router. */
  readonly addresses: readonly [string, string];
  readonly commands: readonly [string, string];
  /** Pairs a second. */
  readonly rate: number;
}

/** Forks this file with `config`. */
export function startPairedClient(config: PairedClientConfig): ForkedClient<[number[], number[]]> {
  return ForkedClient.start(__filename, config);
}

async function main(config: PairedClientConfig, io: ForkedClientIo): Promise<[number[], number[]]> {
  const rigs = [
    roundRobinClients({ address: config.addresses[0] }),
    roundRobinClients({ address: config.addresses[1] }),
  ] as const;
  const pairs = new PairedEnqueues(rigs, config.commands, config.rate, () => io.open);
  io.counts = () => [...pairs.answered];
  try {
    try {
      while (!io.stopping) {
        pairs.check();
        await io.tick();
      }
    } finally {
      // every answer is in before the latencies are read, or before a failure is thrown
      await pairs.stop();
    }
    return pairs.latencies;
  } finally {
    for (const rig of rigs) rig.close();
  }
}

if (require.main === module) runForkedClient(main);
