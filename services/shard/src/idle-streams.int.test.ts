import { createChannel, createClient, Metadata } from "nice-grpc";
import { QueueServiceDefinition, type LeaseStreamRequest } from "@codeq/proto";
import { eventually, shardFixture, type ShardFixture } from "./test/fixture";

const STREAMS = 1000;

describe("many idle streams", () => {
  let fx: ShardFixture;
  beforeAll(async () => (fx = await shardFixture({ rewakeMs: 3_600_000, dueIdleMs: 60_000 })));
  afterAll(() => fx.close());

  it(`holds ${STREAMS} idle LeaseStreams, and each later receives its own task`, async () => {
    const channels = Array.from({ length: 10 }, () => createChannel(fx.address));
    const received = new Map<string, string>();
    const controllers: AbortController[] = [];
    const done: Promise<void>[] = [];
    for (let i = 0; i < STREAMS; i++) {
      const tenant = `tenant-${i}`;
      const client = createClient(QueueServiceDefinition, channels[i % channels.length]!, {
        "*": { metadata: new Metadata({ "x-codeq-tenant": tenant }) },
      });
      const abort = new AbortController();
      controllers.push(abort);
      async function* requests(): AsyncGenerator<LeaseStreamRequest> {
        yield {
          subscribe: { commands: ["IDLE"], leaseDurationMs: 0, allTenants: false, maxBatch: 0 },
          credits: 1,
          requestId: 0,
          acks: [],
          nacks: [],
          extends: [],
          withdrawCredits: false,
        };
        await new Promise((resolve) => abort.signal.addEventListener("abort", resolve));
      }
      done.push(
        (async () => {
          try {
            for await (const res of client.leaseStream(requests(), { signal: abort.signal })) {
              const task = res.tasks?.tasks[0]?.task;
              if (task) received.set(tenant, task.id);
            }
          } catch {
            // aborted at the end of the test
          }
        })(),
      );
    }
    await eventually(async () => fx.worker.notifier.parked === STREAMS, 30_000);

    const expected = new Map<string, string>();
    for (let i = 0; i < STREAMS; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, async (_, j) => {
          const tenant = `tenant-${i + j}`;
          const { taskId } = await fx.client(tenant).enqueue({ command: "IDLE" });
          expected.set(tenant, taskId);
        }),
      );
    }
    await eventually(async () => received.size === STREAMS, 30_000);
    expect(received).toEqual(expected);

    for (const c of controllers) c.abort();
    await Promise.all(done);
    for (const ch of channels) ch.close();
  }, 90_000);
});
