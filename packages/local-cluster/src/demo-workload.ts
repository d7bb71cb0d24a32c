import { createChannel, createClient, Metadata, type Channel } from "nice-grpc";
import { QueueServiceDefinition, type LeaseStreamRequest } from "@codeq/proto";

export interface WorkloadCounts {
  enqueued: number;
  acked: number;
}

/**
 * A demo producer and worker against one shard worker: the producer sends batches
 * of 100 tasks; the worker holds one LeaseStream, acks each pushed batch in one
 * message and returns its credits with the ack. Runs until `signal` aborts.
 */
export async function runDemoWorkload(
  address: string,
  counts: WorkloadCounts,
  signal: AbortSignal,
): Promise<void> {
  const channels: Channel[] = [createChannel(address), createChannel(address)];
  const metadata = new Metadata({ "x-codeq-tenant": "demo" });
  const producer = createClient(QueueServiceDefinition, channels[0]!, { "*": { metadata } });
  const worker = createClient(QueueServiceDefinition, channels[1]!, { "*": { metadata } });

  const outbox: LeaseStreamRequest[] = [];
  let wake: (() => void) | undefined;
  const send = (req: Partial<LeaseStreamRequest>) => {
    outbox.push({
      credits: 0,
      requestId: 0,
      acks: [],
      nacks: [],
      extends: [],
      ...req,
    } as LeaseStreamRequest);
    wake?.();
  };
  async function* requests(): AsyncGenerator<LeaseStreamRequest> {
    while (!signal.aborted) {
      const next = outbox.shift();
      if (next) yield next;
      else await new Promise<void>((r) => (wake = r));
    }
  }
  signal.addEventListener("abort", () => wake?.(), { once: true });
  send({
    subscribe: {
      commands: ["DEMO_EMAIL"],
      leaseDurationMs: 30_000,
      allTenants: false,
      maxBatch: 100,
    },
    credits: 500,
  });

  const consuming = (async () => {
    let requestId = 0;
    try {
      for await (const res of worker.leaseStream(requests(), { signal })) {
        const tasks = res.tasks?.tasks ?? [];
        if (tasks.length === 0) continue;
        send({
          requestId: ++requestId,
          credits: tasks.length,
          acks: tasks.map((t) => ({ leaseToken: t.leaseToken, result: Buffer.alloc(0) })),
        });
        counts.acked += tasks.length;
      }
    } catch {
      // stopped
    }
  })();
  const producing = (async () => {
    while (!signal.aborted) {
      try {
        const res = await producer.enqueueBatch(
          {
            tasks: Array.from(
              { length: 100 },
              (_, i) => ({ command: "DEMO_EMAIL", payload: Buffer.from(`hello ${i}`) }) as never,
            ),
          },
          { signal },
        );
        counts.enqueued += res.results.filter((r) => r.status?.code === 0).length;
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  await Promise.all([consuming, producing]);
  for (const c of channels) c.close();
}
