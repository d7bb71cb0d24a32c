import { Status } from "nice-grpc";
import { TaskState, type QueueServiceClient, type Task } from "@codeq/proto";
import { eventually, StreamDriver, SUB, useRelayedShard } from "./test/fixture";

/** The task once it is ready again (within 10 s: well before a 30 s lease expires). */
async function readyAgain(c: QueueServiceClient, command: string, taskId: string) {
  let task: Task | undefined;
  await eventually(async () => {
    task = (await c.getTask({ command, taskId }).catch(() => undefined))?.task;
    return task?.state === TaskState.TASK_STATE_READY;
  }, 10_000);
  return task!;
}

/**
 * The store goes away for longer than ioredis's retries (a KVRocks restart), while a
 * stream holds a task its worker is running and its pump leases for a new credit.
 */
describe("a shard worker whose store restarts under a stream", () => {
  const rs = useRelayedShard();

  it("keeps the stream and what it holds; leases again once the store is back", async () => {
    const c = rs.fx.client("t-restart");
    const s = new StreamDriver(c);
    s.send({ ...SUB(["RESTART"]), credits: 1 });
    await s.next(); // subscribed
    const { taskId } = await c.enqueue({ command: "RESTART" });
    const [a] = (await s.next(3_000))!.tasks!.tasks; // the worker is running a
    const b = await c.enqueue({ command: "RESTART" }); // ready, waits for a credit

    rs.relay.restart(1_500);
    s.send({ credits: 1 }); // the pump leases while the store is away: the lease fails
    // once the store is back, b is pushed on the same stream
    const next = await s.next(10_000);
    expect(next?.tasks?.tasks.map((t) => t.task!.id)).toEqual([b.taskId]);
    // the failed lease is counted, for whoever watches the worker
    const failed = (await rs.fx.worker.metrics.operationFailures.get()).values.find(
      (v) => v.labels.operation === "lease",
    );
    expect(failed?.value).toBeGreaterThanOrEqual(1);
    // a was not released under its worker: its ack is applied
    s.send({ requestId: 1, acks: [{ leaseToken: a!.leaseToken, result: Buffer.alloc(0) }] });
    expect((await s.next(3_000))?.settled?.acks.map((x) => x.code)).toEqual([Status.OK]);
    const task = (await c.getTask({ command: "RESTART", taskId })).task!;
    expect(task.attempts).toBe(1);
    expect(task.lastError).toBe("");
    s.close();
  }, 20_000);

  it("gives back, once the store is back, a handoff whose stream ended and whose give-back failed", async () => {
    const c = rs.fx.client("t-giveback");
    const queue = { command: "GIVEBACK", tenant: "t-giveback" };
    const s = new StreamDriver(c);
    s.send({ ...SUB(["GIVEBACK"]), credits: 1 });
    await s.next(); // subscribed
    await eventually(async () => rs.fx.worker.notifier.waitingOn(queue) === 1);
    // the enqueue hands its task to the stream; the stream ends before the handoff is back
    const engine = rs.fx.worker.engine;
    const [enqueueAndLease, giveBack] = [engine.enqueueAndLease, engine.giveBack].map((f) =>
      f.bind(engine),
    ) as [typeof engine.enqueueAndLease, typeof engine.giveBack];
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    let [handedOff, givenBack] = [0, 0];
    engine.enqueueAndLease = async (...args) => {
      engine.enqueueAndLease = enqueueAndLease;
      handedOff++;
      await gate;
      return enqueueAndLease(...args);
    };
    // and the store goes away as the worker gives the task back
    engine.giveBack = async (...args) => {
      engine.giveBack = giveBack;
      rs.relay.restart(1_500);
      givenBack++;
      return giveBack(...args);
    };
    const enqueued = c.enqueue({ command: "GIVEBACK" });
    await eventually(async () => handedOff === 1);
    const streams = await rs.fx.worker.metrics.streamsOpen();
    s.abort.abort();
    await eventually(async () => (await rs.fx.worker.metrics.streamsOpen()) < streams);
    open();
    const { taskId } = await enqueued;
    expect(givenBack).toBe(1);
    // ready again within seconds, not when its 30 s lease expires; no attempt counted
    expect((await readyAgain(c, "GIVEBACK", taskId)).attempts).toBe(0);
  }, 20_000);

  it("releases, once the store is back, what a closed stream held when the store failed its release", async () => {
    const c = rs.fx.client("t-release");
    const s = new StreamDriver(c);
    s.send({ ...SUB(["RELEASE"]), credits: 1 });
    await s.next(); // subscribed
    const { taskId } = await c.enqueue({ command: "RELEASE" });
    expect((await s.next(3_000))!.tasks!.tasks.map((t) => t.task!.id)).toEqual([taskId]);
    // the store goes away as the worker releases what the closed stream held
    const engine = rs.fx.worker.engine;
    const release = engine.release.bind(engine);
    let released = 0;
    engine.release = async (...args) => {
      engine.release = release;
      rs.relay.restart(1_500);
      released++;
      return release(...args);
    };
    const streams = await rs.fx.worker.metrics.streamsOpen();
    s.abort.abort();
    await eventually(async () => (await rs.fx.worker.metrics.streamsOpen()) < streams);
    expect(released).toBe(1);
    // ready again within seconds, not when its 30 s lease expires; its attempt counted
    expect((await readyAgain(c, "RELEASE", taskId)).attempts).toBe(1);
  }, 20_000);
});

/**
 * The store stops answering without closing its connection (it stalls, or its host
 * drops packets): a ping never fails, it just never comes back.
 */
describe("a shard worker whose store stops answering", () => {
  const rs = useRelayedShard({ storeCheckMs: 200, depthScrapeTimeoutMs: 300 });

  it("says so in health and metrics within two check periods", async () => {
    expect(rs.fx.worker.grpc.health.getStatus()).toBe("healthy");
    rs.relay.silence();
    const silenced = Date.now();
    await eventually(async () => rs.fx.worker.grpc.health.getStatus() === "unhealthy", 3_000);
    expect(Date.now() - silenced).toBeLessThan(3_000);
    const available = (await rs.fx.worker.metrics.available.get()).values[0]?.value;
    expect(available).toBe(0);
    // the QueueService's own health says the same as the server's: a probe reads one
    // answer whichever name it asks
    expect(rs.fx.worker.grpc.health.getStatus("codeq.v1.QueueService")).toBe("unhealthy");
  });

  it("answers a metrics scrape without the queue depth it cannot read, not after the socket timeout", async () => {
    rs.relay.silence();
    await eventually(async () => rs.fx.worker.grpc.health.getStatus() === "unhealthy", 3_000);
    const scrape = async () => {
      const started = Date.now();
      const res = await fetch(`http://127.0.0.1:${rs.fx.worker.metricsPort}/metrics`);
      const body = await res.text();
      return { status: res.status, body, took: Date.now() - started };
    };
    const first = await scrape();
    expect(first.status).toBe(200);
    expect(first.took).toBeLessThan(3_000); // the store's socket timeout is 30 s
    expect(first.body).toMatch(/codeq_shard_available\{shard="a"\} 0/);
    expect(first.body).not.toMatch(/codeq_queue_depth\{/);
    expect(first.body).toMatch(/codeq_queue_depth_read_errors_total\{shard="a"\} 1/);
    // the next scrape shares the read still waiting, and counts it failed no more
    const second = await scrape();
    expect(second.took).toBeLessThan(3_000);
    expect(second.body).toMatch(/codeq_queue_depth_read_errors_total\{shard="a"\} 1/);
  });
});

/**
 * The store's host vanishes without closing the connection, and the store comes back
 * at the same address: the worker's connection, silent, is replaced.
 */
describe("a shard worker whose store connection goes silent", () => {
  const rs = useRelayedShard({ storeCheckMs: 200, storeSocketTimeoutMs: 1_000 });

  it("serves again once a new connection reaches the store, not when TCP gives up", async () => {
    rs.relay.silenceOpen();
    await eventually(async () => rs.fx.worker.grpc.health.getStatus() === "unhealthy", 3_000);
    await eventually(async () => rs.fx.worker.grpc.health.getStatus() === "healthy", 10_000);
    const c = rs.fx.client("t-silent");
    const { taskId } = await c.enqueue({ command: "SILENT" });
    expect((await c.getTask({ command: "SILENT", taskId })).task?.id).toBe(taskId);
  });
});
