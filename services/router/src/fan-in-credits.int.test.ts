import { setTimeout as sleep } from "node:timers/promises";
import { FanInSession } from "./fan-in";
import { clusterPerTest, Stream, within } from "./test/cluster";

/**
 * A client's credits across shard streams when the router takes some back: never more
 * tasks in flight than the client granted, and none cut off on its way and counted as
 * an attempt when the client half-closes.
 */
const cluster = clusterPerTest({ commands: { X: "a", Y: "b" }, shard: { mover: false } });

const batch = (command: string, n: number, maxAttempts = 5) => ({
  tasks: Array.from({ length: n }, (_, i) => ({
    command,
    maxAttempts,
    payload: Buffer.from(`${command}${i}`),
  })),
});

test("an idle shard's credits taken back while its tasks arrive leave no more in flight than granted", async () => {
  const c = cluster().client("t1");
  // the router's withdrawal from a is slow to reach it (a busy link): X's tasks get
  // there first, and a pushes with every credit it holds
  const session = FanInSession.prototype as unknown as {
    takeBack(...args: unknown[]): Promise<void>;
  };
  const takeBack = session.takeBack;
  let arrived: Promise<unknown> | undefined;
  jest.spyOn(session, "takeBack").mockImplementation(async function (
    this: unknown,
    ...args: unknown[]
  ) {
    if ((args[0] as { conn: { id: string } }).conn.id === "a" && !arrived) {
      arrived = c.enqueueBatch(batch("X", 40));
      await arrived;
      await sleep(100);
    }
    return takeBack.apply(this, args);
  });
  const s = new Stream(cluster());
  s.send({ subscribe: { commands: ["X", "Y"] }, credits: 30 });
  await within(2_000, () => s.received.some((r) => r.subscribed));
  await sleep(400); // both shards idle, holding 15 credits each
  // b gets busy: it pushes its 15 and wants more; a, idle, is asked for its surplus
  await c.enqueueBatch(batch("Y", 40));
  await within(3_000, () => arrived !== undefined);
  await sleep(1_000);
  expect(s.tasks().length).toBeLessThanOrEqual(30);
  expect(s.tasks().some((t) => t.task!.shard === "a")).toBe(true);
  expect(s.failure).toBeUndefined();
  await s.close();
});

test("a client that half-closes while a shard pushes loses no task it never received to an attempt", async () => {
  const c = cluster().client("t1");
  const received = new Set<string>();
  for (let trial = 0; trial < 6; trial++) {
    const s = new Stream(cluster());
    s.send({ subscribe: { commands: ["X"] }, credits: 5_000 });
    await within(2_000, () => s.received.some((r) => r.subscribed));
    let stop = false;
    const producer = (async () => {
      while (!stop) await c.enqueueBatch(batch("X", 10, 1));
    })();
    await sleep(200 + trial * 7);
    s.requests.close(); // the worker wants no more
    await within(5_000, () => s.ended);
    stop = true;
    await producer;
    for (const t of s.tasks()) received.add(t.task!.id);
    // what is left is ready: leased and done here
    await sleep(300);
    for (;;) {
      const got = await c.lease({ commands: ["X"], maxTasks: 500 });
      if (got.tasks.length === 0) break;
      for (const t of got.tasks) received.add(t.task!.id);
      await c.ack({ items: got.tasks.map((t) => ({ leaseToken: t.leaseToken })) });
    }
  }
  // tasks the worker got and never settled died on their one attempt; none it never got
  const dead = await cluster().client("t1", "admin").listDead({ command: "X", pageSize: 1_000 });
  expect(dead.tasks.filter((t) => !received.has(t.id)).map((t) => t.lastError)).toEqual([]);
}, 60_000);

test("a client that half-closes while pushes wait in the router for it to read does not get them: they go back uncounted", async () => {
  const c = cluster().client("t1");
  const n = 60;
  let read!: () => void;
  const s = new Stream(cluster(), "t1", new Promise<void>((resolve) => (read = resolve)));
  s.send({ subscribe: { commands: ["X"] }, credits: n });
  // one push each, 100 KB apiece: far more than the transport holds for a reader that
  // does not read, so most wait in the router's queue for the client
  const big = Buffer.alloc(100_000, 1);
  for (let i = 0; i < n; i++) await c.enqueue({ command: "X", maxAttempts: 1, payload: big });
  await within(5_000, async () => {
    const a = (await cluster().workers.get("a")!.engine.stats({ command: "X", tenant: "t1" }))!;
    return a.leased === n;
  });
  s.requests.close(); // the worker wants no more, and has read nothing yet
  await sleep(200);
  read();
  await within(10_000, () => s.ended);
  // only what the transport held already reached it (about half, here)
  const received = s.tasks().length;
  expect(received).toBeLessThan(n);
  // what reached the worker died on its one attempt (it could not settle it); the rest
  // is ready again, its attempt not counted
  await within(5_000, async () => {
    const a = (await cluster().workers.get("a")!.engine.stats({ command: "X", tenant: "t1" }))!;
    return a.leased === 0;
  });
  const a = await cluster().workers.get("a")!.engine.stats({ command: "X", tenant: "t1" });
  expect(a).toMatchObject({ dead: received, ready: n - received });
}, 30_000);
