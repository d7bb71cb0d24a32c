import { createChannel, createClient, Metadata, type Channel } from "nice-grpc";
import { QueueServiceDefinition, type LeaseStreamRequest } from "@codeq/proto";

/** The demo's commands and the shard each is mapped to in the local cluster's map. */
export const DEMO_COMMANDS: Readonly<Record<string, string>> = {
  "email.send": "a",
  "image.resize": "b",
  "report.build": "c",
};

export interface WorkloadCounts {
  enqueued: number;
  acked: number;
  /** Acked tasks per shard that delivered them. */
  ackedByShard: Record<string, number>;
}

/**
 * A demo producer and worker, both talking to the router: the producer sends
 * batches of 99 tasks spread over the demo commands (the router splits each batch
 * across the shards that own them); the worker holds one LeaseStream subscribed to
 * every demo command (the router fans it in from all shards), acks each pushed
 * batch in one message and returns its credits with the ack. Runs until `signal`
 * aborts. A call or stream that fails meanwhile is reported to `onError` and tried
 * again a second later (a demo that went quiet without a word hid a dead router).
 */
export async function runDemoWorkload(
  address: string,
  counts: WorkloadCounts,
  signal: AbortSignal,
  onError: (who: "producer" | "worker", err: unknown) => void = () => undefined,
): Promise<void> {
  const commands = Object.keys(DEMO_COMMANDS);
  const channels: Channel[] = [createChannel(address), createChannel(address)];
  const metadata = new Metadata({ "x-codeq-tenant": "demo" });
  const producer = createClient(QueueServiceDefinition, channels[0]!, { "*": { metadata } });
  const worker = createClient(QueueServiceDefinition, channels[1]!, { "*": { metadata } });
  const pause = () =>
    new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, 1_000);
      signal.addEventListener("abort", done, { once: true });
    });

  /** One LeaseStream, until it ends or fails. */
  async function stream(): Promise<void> {
    const outbox: LeaseStreamRequest[] = [];
    let wake: (() => void) | undefined;
    let ended = false;
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
      while (!signal.aborted && !ended) {
        const next = outbox.shift();
        if (next) yield next;
        else await new Promise<void>((r) => (wake = r));
      }
    }
    const onAbort = () => wake?.();
    signal.addEventListener("abort", onAbort, { once: true });
    send({
      subscribe: {
        commands,
        leaseDurationMs: 30_000,
        allTenants: false,
        maxBatch: 100,
      },
      credits: 500,
    });
    let requestId = 0;
    // the shard of each ack sent, by request, until the router confirms it
    const sent = new Map<number, string[]>();
    try {
      for await (const res of worker.leaseStream(requests(), { signal })) {
        if (res.settled) {
          // counted once confirmed, so "acked" never runs ahead of what was stored
          const shards = sent.get(res.settled.requestId) ?? [];
          sent.delete(res.settled.requestId);
          res.settled.acks.forEach((r, i) => {
            if (r.code !== 0) return;
            const shard = shards[i] ?? "?";
            counts.acked++;
            counts.ackedByShard[shard] = (counts.ackedByShard[shard] ?? 0) + 1;
          });
        }
        const tasks = res.tasks?.tasks ?? [];
        if (tasks.length === 0) continue;
        sent.set(
          ++requestId,
          tasks.map((t) => t.task?.shard ?? "?"),
        );
        send({
          requestId,
          credits: tasks.length,
          acks: tasks.map((t) => ({ leaseToken: t.leaseToken, result: Buffer.alloc(0) })),
        });
      }
    } finally {
      ended = true;
      wake?.();
      signal.removeEventListener("abort", onAbort);
    }
  }

  const consuming = (async () => {
    while (!signal.aborted) {
      try {
        await stream();
        if (!signal.aborted) onError("worker", new Error("the router ended the LeaseStream"));
      } catch (err) {
        if (signal.aborted) return;
        onError("worker", err);
      }
      await pause();
    }
  })();
  const producing = (async () => {
    while (!signal.aborted) {
      try {
        const res = await producer.enqueueBatch(
          {
            tasks: Array.from(
              { length: 99 },
              (_, i) =>
                ({
                  command: commands[i % commands.length]!,
                  payload: Buffer.from(`hello ${i}`),
                }) as never,
            ),
          },
          { signal },
        );
        counts.enqueued += res.results.filter((r) => r.status?.code === 0).length;
        await new Promise((r) => setTimeout(r, 20));
      } catch (err) {
        if (signal.aborted) return;
        onError("producer", err);
        await pause();
      }
    }
  })();
  await Promise.all([consuming, producing]);
  for (const c of channels) c.close();
}
