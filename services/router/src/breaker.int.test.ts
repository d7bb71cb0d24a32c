import { ClientError, Status } from "nice-grpc";
import { routerCluster, within, type RouterCluster } from "./test/cluster";

/**
 * A shard's circuit breaker, once open, lets one trial through after
 * `breakerResetMs`. The trial is the router's own health check: a caller's call as the
 * trial could be a long poll, and every other call to that shard would be refused for
 * as long as it waited.
 */
let rc: RouterCluster;
beforeEach(async () => {
  rc = await routerCluster({
    commands: { X: "a", Y: "b" },
    shard: { mover: false },
    router: { breakerResetMs: 300 },
  });
});
afterEach(() => rc.close());

test("an open breaker closes by a health check once its shard is back, with no caller's call as the trial", async () => {
  const c = rc.client("t1");
  const conn = () => rc.router.routing.pool.get("a");
  await rc.stopShard("a");
  const codes: Status[] = [];
  for (let i = 0; i < 10; i++)
    codes.push(
      await c.enqueue({ command: "X" }).then(
        () => Status.OK,
        (err: ClientError) => err.code,
      ),
    );
  expect(codes.every((code) => code === Status.UNAVAILABLE)).toBe(true);
  expect(conn().breakerState).toBe("open");
  // the router's codeq_shard_available reads 0 for a, whose worker exports nothing now
  const available = async (shard: string) => {
    const body = await fetch(`http://127.0.0.1:${rc.router.metricsPort}/metrics`).then((r) =>
      r.text(),
    );
    return Number(
      new RegExp(`^codeq_shard_available\\{shard="${shard}"\\} (\\d)$`, "m").exec(body)?.[1],
    );
  };
  expect(await available("a")).toBe(0);
  expect(await available("b")).toBe(1);
  // trials while the shard is down fail, and the breaker opens again each time
  await new Promise((r) => setTimeout(r, 1_000));
  expect(conn().breakerState).not.toBe("closed");

  await rc.startShard("a");
  // no call to a is made: the breaker's own trial closes it
  await within(5_000, () => conn().breakerState === "closed");
  expect(await available("a")).toBe(1);
  // a long poll on a's empty queue does not hold up an enqueue
  const poll = c.lease({ commands: ["X"], maxTasks: 1, waitMs: 5_000 });
  await new Promise((r) => setTimeout(r, 100));
  const started = Date.now();
  const { taskId } = await c.enqueue({ command: "X" });
  expect((await poll).tasks.map((t) => t.task!.id)).toEqual([taskId]);
  expect(Date.now() - started).toBeLessThan(2_000);
}, 30_000);

test("a shard stream's failure counted while the breaker is open leaves no rejection unhandled", async () => {
  // Node 20 ends a process on an unhandled rejection: the router with every client of it
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  try {
    const conn = () => rc.router.routing.pool.get("a");
    await rc.stopShard("a");
    const c = rc.client("t1");
    for (let i = 0; i < 10 && conn().breakerState !== "open"; i++)
      await c.enqueue({ command: "X" }).catch(() => undefined);
    expect(conn().breakerState).toBe("open");
    // a lease stream to a breaks now (keepalive, or given up): its failure is recorded
    conn().record(
      new ClientError("/codeq.v1.QueueService/LeaseStream", Status.UNAVAILABLE, "stream broke"),
    );
    await new Promise((r) => setTimeout(r, 100));
    expect(unhandled).toEqual([]);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
}, 30_000);

test("a Lease a shard failed is not sent again by the router (not a read)", async () => {
  const c = rc.client("t1");
  const forwarded = async () =>
    (await rc.router.routing.metrics.forwarded.get()).values
      .filter((v) => v.labels.shard === "a" && v.labels.call === "lease")
      .reduce((n, v) => n + v.value, 0);
  await rc.stopShard("a");
  const before = await forwarded();
  const leased = await c.lease({ commands: ["X"], maxTasks: 1, waitMs: 1_000 }).then(
    () => Status.OK,
    (err: ClientError) => err.code,
  );
  expect(leased).toBe(Status.UNAVAILABLE);
  expect(await forwarded()).toBe(before + 1);
  expect(rc.router.routing.pool.get("a").breakerState).toBe("closed");
}, 30_000);
