import { createChannel, createClient, type Channel } from "nice-grpc";
import { startGrpcServer, withUnimplemented, type TestGrpcServer } from "@codeq/testing";
import {
  AdminServiceDefinition,
  BackoffKind,
  internal,
  loadDescriptorSet,
  QueueServiceDefinition,
  TaskState,
  type EnqueueStreamRequest,
  type LeaseStreamRequest,
  type QueueServiceImplementation,
} from "./index";

/**
 * A contract test double: it answers from the request alone, so the test checks
 * that every field survives the generated encoders and decoders both ways, and that
 * unary and bidirectional calls work through a real nice-grpc server.
 */
const queue: Partial<QueueServiceImplementation> = {
  async enqueue(req) {
    return {
      taskId: `${req.command}/${req.idempotencyKey}/${req.priority}/${req.headers.trace}`,
      duplicate: req.payload.length === 0,
      state: req.delayMs > 0 ? TaskState.TASK_STATE_SCHEDULED : TaskState.TASK_STATE_READY,
    };
  },
  async *enqueueStream(requests: AsyncIterable<EnqueueStreamRequest>) {
    for await (const batch of requests) {
      yield {
        seq: batch.seq,
        results: batch.tasks.map((t, i) => ({
          status: { code: 0, message: "" },
          taskId: `${batch.seq}.${i}.${t.command}`,
          duplicate: false,
          state: TaskState.TASK_STATE_READY,
        })),
      };
    }
  },
  async *leaseStream(requests: AsyncIterable<LeaseStreamRequest>) {
    let n = 0;
    for await (const req of requests) {
      if (req.subscribe) {
        yield {
          subscribed: { streamId: req.subscribe.commands.join(","), leaseDurationMs: 30000 },
        };
      }
      if (req.credits > 0) {
        const tasks = Array.from({ length: req.credits }, () => {
          n += 1;
          return {
            leaseToken: `token-${n}`,
            leaseDeadlineMs: 1_700_000_000_000 + n,
            task: {
              id: `task-${n}`,
              command: "SEND_EMAIL",
              tenant: "acme",
              payload: Buffer.from(`p${n}`),
              priority: 9,
              runAtMs: 1_700_000_000_000,
              maxAttempts: 5,
              attempts: 1,
              backoff: {
                kind: BackoffKind.BACKOFF_KIND_LINEAR,
                baseMs: 10,
                maxMs: 100,
                jitter: true,
              },
              idempotencyKey: "",
              headers: { a: "b" },
              createdAtMs: 1,
              updatedAtMs: 2,
              state: TaskState.TASK_STATE_LEASED,
              lastError: "",
              result: Buffer.alloc(0),
              shard: "a",
              leaseDeadlineMs: 1_700_000_000_000 + n,
            },
          };
        });
        yield { tasks: { tasks } };
      }
      if (req.acks.length + req.nacks.length + req.extends.length > 0) {
        yield {
          settled: {
            requestId: req.requestId,
            acks: req.acks.map((a) => ({
              code: a.leaseToken ? 0 : 3,
              message: a.result.toString(),
            })),
            nacks: req.nacks.map((k) => ({ code: 0, message: `${k.delayMs ?? "backoff"}` })),
            extends: req.extends.map((e) => ({
              status: { code: 0, message: "" },
              leaseDeadlineMs: e.leaseDurationMs,
            })),
          },
        };
      }
    }
  },
};

describe("v1 contract through a real nice-grpc server", () => {
  let srv: TestGrpcServer;
  let channel: Channel;

  beforeAll(async () => {
    srv = await startGrpcServer((s) => {
      s.add(QueueServiceDefinition, withUnimplemented(QueueServiceDefinition, queue));
      s.add(
        AdminServiceDefinition,
        withUnimplemented(AdminServiceDefinition, {
          async getShardMap() {
            return {
              map: {
                version: 7,
                shards: [{ id: "a", endpoint: "127.0.0.1:1", state: 1 }],
                defaultShard: "a",
                assignments: [{ command: "SEND_EMAIL", tenant: "", shard: "a" }],
                migrations: [],
                updatedAtMs: 5,
              },
              stale: false,
              loadedAtMs: 6,
            };
          },
        }),
      );
      s.add(
        internal.ShardServiceDefinition,
        withUnimplemented(internal.ShardServiceDefinition, {
          async importTasks(req: internal.ImportTasksRequest) {
            return { imported: req.tasks.map((t) => t.task!.id), alreadyPresent: [] };
          },
        }),
      );
    });
    channel = createChannel(srv.address);
  });

  afterAll(async () => {
    channel.close();
    await srv.stop();
  });

  it("unary: Enqueue round-trips every field it uses", async () => {
    const client = createClient(QueueServiceDefinition, channel);
    const res = await client.enqueue({
      command: "SEND_EMAIL",
      payload: Buffer.from("hi"),
      priority: 7,
      delayMs: 1500,
      idempotencyKey: "k1",
      headers: { trace: "t-1" },
    });
    expect(res).toEqual({
      taskId: "SEND_EMAIL/k1/7/t-1",
      duplicate: false,
      state: TaskState.TASK_STATE_SCHEDULED,
    });
  });

  it("bidi: EnqueueStream answers every batch by seq with per-item results", async () => {
    const client = createClient(QueueServiceDefinition, channel);
    async function* batches() {
      yield { seq: 1, tasks: [{ command: "A" }, { command: "B" }] };
      yield { seq: 2, tasks: [{ command: "C" }] };
    }
    const answers = [];
    for await (const res of client.enqueueStream(batches())) answers.push(res);
    expect(answers.map((a) => [a.seq, a.results.map((r) => r.taskId)])).toEqual([
      [1, ["1.0.A", "1.1.B"]],
      [2, ["2.0.C"]],
    ]);
  });

  it("bidi: LeaseStream carries subscription, credits, pushed batches and settlements", async () => {
    const client = createClient(QueueServiceDefinition, channel);
    const outbox: LeaseStreamRequest[] = [];
    let wake: (() => void) | undefined;
    let closed = false;
    const send = (req: Partial<LeaseStreamRequest>) => {
      outbox.push(req as LeaseStreamRequest);
      wake?.();
    };
    async function* requests() {
      while (!closed || outbox.length > 0) {
        if (outbox.length === 0) await new Promise<void>((r) => (wake = r));
        const next = outbox.shift();
        if (next) yield next;
      }
    }
    send({
      subscribe: {
        commands: ["SEND_EMAIL", "SEND_SMS"],
        leaseDurationMs: 0,
        allTenants: false,
        maxBatch: 0,
      },
      credits: 2,
    });

    const seen: string[] = [];
    for await (const res of client.leaseStream(requests())) {
      if (res.subscribed) {
        seen.push(`subscribed:${res.subscribed.streamId}`);
      } else if (res.tasks) {
        const batch = res.tasks.tasks;
        seen.push(`tasks:${batch.map((t) => t.task?.id).join(",")}`);
        expect(batch[0]!.task!.payload).toEqual(Buffer.from("p1"));
        expect(batch[0]!.task!.backoff).toEqual({
          kind: BackoffKind.BACKOFF_KIND_LINEAR,
          baseMs: 10,
          maxMs: 100,
          jitter: true,
        });
        expect(batch[0]!.task!.headers).toEqual({ a: "b" });
        send({
          requestId: 42,
          acks: [{ leaseToken: batch[0]!.leaseToken, result: Buffer.from("ok") }],
          nacks: [
            { leaseToken: batch[1]!.leaseToken, delayMs: 0, error: "retry", deadLetter: false },
            { leaseToken: "x", error: "", deadLetter: false },
          ],
          extends: [{ leaseToken: batch[1]!.leaseToken, leaseDurationMs: 60000 }],
        });
      } else if (res.settled) {
        const s = res.settled;
        seen.push(`settled:${s.requestId}`);
        expect(s.acks).toEqual([{ code: 0, message: "ok" }]);
        // An explicit 0 delay stays distinguishable from "no delay given".
        expect(s.nacks.map((n) => n.message)).toEqual(["0", "backoff"]);
        expect(s.extends[0]!.leaseDeadlineMs).toBe(60000);
        closed = true;
        wake?.();
      }
    }
    expect(seen).toEqual(["subscribed:SEND_EMAIL,SEND_SMS", "tasks:task-1,task-2", "settled:42"]);
  });

  it("unary: AdminService and the internal ShardService are served from the same stubs", async () => {
    const admin = createClient(AdminServiceDefinition, channel);
    const map = await admin.getShardMap({});
    expect(map.map?.version).toBe(7);
    expect(map.map?.assignments).toEqual([{ command: "SEND_EMAIL", tenant: "", shard: "a" }]);

    const shard = createClient(internal.ShardServiceDefinition, channel);
    const res = await shard.importTasks({
      command: "C",
      tenant: "t",
      migrationId: "m",
      tasks: [{ task: { id: "t1" } as never, idempotencyExpiresAtMs: 0 }],
    });
    expect(res.imported).toEqual(["t1"]);
  });

  it("ships a descriptor set naming every service", () => {
    const bytes = loadDescriptorSet().toString("latin1");
    for (const name of [
      "codeq/v1/queue.proto",
      "codeq/v1/admin.proto",
      "codeq/internal/v1/shard.proto",
      "QueueService",
      "AdminService",
      "ShardService",
    ]) {
      expect(bytes).toContain(name);
    }
  });
});
