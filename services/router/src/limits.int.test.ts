import { ClientError, Metadata, Status } from "nice-grpc";
import { LeaseStreamRequest } from "@codeq/proto";
import { Channel } from "@codeq/server-kit";
import { RedisServer } from "@codeq/testing";
import { MAX_RESULT_BYTES, TASK_FIELDS_MAX_BYTES } from "@codeq/wire";
import { RETRY_AFTER_TRAILER } from "./limits";
import { routerCluster, within, type RouterCluster } from "./test/cluster";

let server: RedisServer;
let rc: RouterCluster;

beforeAll(async () => {
  server = await RedisServer.start();
  rc = await routerCluster({
    server,
    router: {
      tenantEnqueueRate: 10,
      tenantLeaseRate: 10,
      rateBurstSeconds: 1,
      maxStreamsPerPrincipal: 1,
      // the least request limit there is: an ack's largest result with the rest of its request
      maxMessageBytes: MAX_RESULT_BYTES + TASK_FIELDS_MAX_BYTES,
    },
  });
});
afterAll(async () => {
  await rc.close();
  await server.stop();
});

const tasks = (n: number, command = "L") =>
  Array.from({ length: n }, () => ({ command, payload: Buffer.from("x") }));

test("enqueue past a tenant's rate is RESOURCE_EXHAUSTED with retry-after, then recovers", async () => {
  const c = rc.client("rate-1");
  await c.enqueueBatch({ tasks: tasks(10) });
  let trailer: Metadata | undefined;
  const err = await c
    .enqueueBatch({ tasks: tasks(5) }, { onTrailer: (t) => (trailer = t) })
    .catch((e: ClientError) => e);
  expect((err as ClientError).code).toBe(Status.RESOURCE_EXHAUSTED);
  expect((err as ClientError).details).toMatch(/rate limit \(10 tasks\/s\)/);
  const wait = Number(trailer?.get(RETRY_AFTER_TRAILER));
  expect(wait).toBeGreaterThan(0);
  // another tenant is not affected
  await rc.client("rate-2").enqueueBatch({ tasks: tasks(10) });
  // after the advised wait the same tenant gets in again
  await new Promise((r) => setTimeout(r, wait + 50));
  await c.enqueueBatch({ tasks: tasks(5) });
  expect((await rc.workers.get("a")!.engine.stats({ command: "L", tenant: "rate-1" })).ready).toBe(
    15,
  );
});

test("a refused enqueue does not count against the tenant's rate", async () => {
  const c = rc.client("rate-refused");
  const code = (p: Promise<unknown>) =>
    p.then(
      () => Status.OK,
      (e: ClientError) => e.code,
    );
  // too many items, a bad priority, a bad item in a batch: each refused, none charged
  expect(await code(c.enqueueBatch({ tasks: tasks(5_000) }))).toBe(Status.INVALID_ARGUMENT);
  for (let i = 0; i < 10; i++)
    expect(await code(c.enqueue({ command: "L", priority: 42 }))).toBe(Status.INVALID_ARGUMENT);
  expect(await code(c.enqueueBatch({ tasks: [...tasks(9), { command: "L", priority: 42 }] }))).toBe(
    Status.INVALID_ARGUMENT,
  );
  // the whole burst (10) is still there, taken at once; then none (a batch of 10 gets
  // in again only a second later: a slow machine does not make this pass or fail)
  expect(await code(c.enqueueBatch({ tasks: tasks(10) }))).toBe(Status.OK);
  expect(await code(c.enqueueBatch({ tasks: tasks(10) }))).toBe(Status.RESOURCE_EXHAUSTED);
});

test("an enqueue the router never sent (its shard's breaker open) does not count against the rate", async () => {
  await rc.change((m) => ({ ...m, commands: { ...m.commands, DOWN: "b" } }));
  await within(2_000, () => rc.router.routing.currentShard("DOWN", "t") === "b");
  await rc.stopShard("b");
  try {
    const c = rc.client("rate-down");
    const codes = new Set<Status>();
    // a few fail on the way to b (perhaps stored: charged), then the breaker refuses
    // the rest unsent, three times the tenant's burst
    for (let i = 0; i < 30; i++)
      codes.add(
        await c.enqueue({ command: "DOWN" }).then(
          () => Status.OK,
          (e: ClientError) => e.code,
        ),
      );
    expect(rc.router.routing.pool.get("b").breakerState).toBe("open");
    expect([...codes]).toEqual([Status.UNAVAILABLE]);
    // a batch split over a and b: a's part is stored and charged, b's is refused unsent
    // and given back (three batches of five would pass the burst of ten)
    const split = rc.client("rate-split");
    for (let i = 0; i < 3; i++) {
      const { results } = await split.enqueueBatch({
        tasks: [...tasks(1), ...tasks(4, "DOWN")],
      });
      expect(results.map((r) => r.status?.code ?? 0)).toEqual([0, ...Array(4).fill(14)]);
    }
    await split.enqueueBatch({ tasks: tasks(6) });
  } finally {
    await rc.startShard("b");
  }
});

test("a second LeaseStream of one caller past the cap is RESOURCE_EXHAUSTED", async () => {
  const open = (abort: AbortController) => {
    const requests = new Channel<LeaseStreamRequest>();
    requests.push(LeaseStreamRequest.fromPartial({ subscribe: { commands: ["S"] }, credits: 1 }));
    const it = rc.client("streams").leaseStream(requests, { signal: abort.signal });
    return it[Symbol.asyncIterator]().next();
  };
  const first = new AbortController();
  const firstMsg = await open(first);
  expect(firstMsg.value?.subscribed).toBeDefined();
  const second = new AbortController();
  const err = await open(second).catch((e: ClientError) => e);
  expect((err as ClientError).code).toBe(Status.RESOURCE_EXHAUSTED);
  first.abort();
  // once the first is closed, a new one is allowed
  await within(2_000, async () => {
    const again = new AbortController();
    const ok = await open(again).then(
      (m) => m.value?.subscribed !== undefined,
      () => false,
    );
    again.abort();
    return ok;
  });
});

test("a stream's deliveries are paced by the tenant's lease rate, not refused", async () => {
  const producer = rc.client("paced");
  // 10/s with a 1 s burst: the enqueue limit allows these in two calls, a second apart
  await producer.enqueueBatch({ tasks: tasks(10, "P") });
  await new Promise((r) => setTimeout(r, 1_000));
  await producer.enqueueBatch({ tasks: tasks(10, "P") });
  const requests = new Channel<LeaseStreamRequest>();
  requests.push(LeaseStreamRequest.fromPartial({ subscribe: { commands: ["P"] }, credits: 20 }));
  const abort = new AbortController();
  const started = Date.now();
  let received = 0;
  let failure: unknown;
  const reading = (async () => {
    try {
      for await (const res of rc.client("paced").leaseStream(requests, { signal: abort.signal }))
        received += res.tasks?.tasks.length ?? 0;
    } catch (err) {
      failure = err;
    }
  })();
  await within(5_000, () => received === 20);
  // a burst of 10, then 10 a second: 20 tasks cannot arrive before about a second
  expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  abort.abort();
  await reading;
  expect((failure as Error | undefined)?.name ?? "AbortError").toBe("AbortError");
});

test("a long poll holds none of the tenant's lease rate while it waits", async () => {
  const c = rc.client("poll");
  const poll = () => c.lease({ commands: ["POLL"], maxTasks: 10, waitMs: 2_000 });
  // 10/s with a 1 s burst: each call asks for all of it
  const first = poll();
  await new Promise((r) => setTimeout(r, 300));
  const second = poll();
  await new Promise((r) => setTimeout(r, 300));
  // (before, each waiting poll held its 10, and the tenant's other calls were refused)
  expect((await c.lease({ commands: ["POLL"], maxTasks: 10 })).tasks).toEqual([]);
  // what comes meanwhile is delivered to the polls as before
  await c.enqueueBatch({ tasks: tasks(3, "POLL") });
  const [a, b] = await Promise.all([first, second]);
  expect(a.tasks.length + b.tasks.length).toBe(3);
});

describe("a lease rate that comes back slowly (1 a second, a burst of 10)", () => {
  let slow: RouterCluster;
  beforeAll(async () => {
    slow = await routerCluster({ server, router: { tenantLeaseRate: 1, rateBurstSeconds: 10 } });
  });
  afterAll(() => slow.close());

  test("a long poll delivers no more than the tenant's lease rate holds when it wakes; the rest goes back", async () => {
    const c = slow.client("poll-cap");
    await c.enqueueBatch({ tasks: tasks(10, "DRAIN") });
    const poll = c.lease({ commands: ["CAP"], maxTasks: 10, waitMs: 5_000 });
    // the poll has asked what is ready, found nothing, and given its hold back (the
    // bucket stays full meanwhile)
    await new Promise((r) => setTimeout(r, 1_000));
    // the lease rate spent just before the poll wakes
    expect((await c.lease({ commands: ["DRAIN"], maxTasks: 10 })).tasks).toHaveLength(10);
    await c.enqueueBatch({ tasks: tasks(5, "CAP") });
    const got = (await poll).tasks.length;
    // at least one task, and what came back to the bucket meanwhile (one a second): not
    // the five that came
    expect(got).toBeGreaterThanOrEqual(1);
    expect(got).toBeLessThanOrEqual(3);
    await within(2_000, async () => {
      const s = await slow.workers.get("a")!.engine.stats({ command: "CAP", tenant: "poll-cap" });
      return s.ready === 5 - got && s.leased === got;
    });
  });
});

test("credits a stream takes back unused are given back to the tenant's lease rate", async () => {
  const requests = new Channel<LeaseStreamRequest>();
  requests.push(LeaseStreamRequest.fromPartial({ subscribe: { commands: ["W"] }, credits: 10 }));
  const abort = new AbortController();
  const responses: { withdrawn?: { credits: number } }[] = [];
  const reading = (async () => {
    try {
      for await (const res of rc.client("paused").leaseStream(requests, { signal: abort.signal }))
        responses.push(res);
    } catch {
      // aborted below
    }
  })();
  const bucket = () => rc.router.routing.limits.leaseBucket("paused")!;
  // the ten credits went to the shard: the tenant's burst is spent
  await within(2_000, () => bucket().waitFor(10) > 500);
  requests.push(LeaseStreamRequest.fromPartial({ withdrawCredits: true, requestId: 1 }));
  await within(2_000, () => responses.some((r) => r.withdrawn));
  expect(responses.find((r) => r.withdrawn)!.withdrawn!.credits).toBe(10);
  // nothing was leased with them: a worker that pauses and resumes is not throttled for it
  expect(bucket().waitFor(10)).toBe(0);
  abort.abort();
  await reading;
});

test("a request message over the size cap is refused before it is read", async () => {
  const err = await rc
    .client("big")
    .enqueue({ command: "B", payload: Buffer.alloc(MAX_RESULT_BYTES + TASK_FIELDS_MAX_BYTES) })
    .catch((e: ClientError) => e);
  expect(err).toMatchObject({
    code: Status.RESOURCE_EXHAUSTED,
    details: expect.stringMatching(/larger than max/),
  });
});

describe("shard workers that allow a stream fewer credits than the router does", () => {
  let low: RouterCluster;
  beforeAll(async () => {
    low = await routerCluster({ server, shard: { maxStreamCredits: 100 } });
  });
  afterAll(() => low.close());

  test("a client stream the shard refuses ends RESOURCE_EXHAUSTED, naming the shard and the setting", async () => {
    const requests = new Channel<LeaseStreamRequest>();
    requests.push(LeaseStreamRequest.fromPartial({ subscribe: { commands: ["X"] }, credits: 500 }));
    const err = await (async () => {
      for await (const _ of low.client("t1").leaseStream(requests));
    })().catch((e: unknown) => e);
    requests.close();
    expect(err).toMatchObject({ code: Status.RESOURCE_EXHAUSTED });
    expect((err as ClientError).details).toMatch(
      /^shard a refused the stream: credits outstanding may not exceed 100 \(the router allows more/,
    );
  });
});

test("credits a shard gives back late, its store stalled, are given back to the tenant's lease rate too", async () => {
  const shardTimeoutMs = 1_000;
  // ten tokens that take ten seconds to come back on their own
  const slow = await routerCluster({
    router: { tenantLeaseRate: 1, rateBurstSeconds: 10, shardTimeoutMs },
  });
  const redis = slow.server.client();
  const requests = new Channel<LeaseStreamRequest>();
  const abort = new AbortController();
  try {
    requests.push(LeaseStreamRequest.fromPartial({ subscribe: { commands: ["W"] }, credits: 10 }));
    const responses: { withdrawn?: { credits: number }; tasks?: { tasks: unknown[] } }[] = [];
    const reading = (async () => {
      try {
        for await (const res of slow.client("stall").leaseStream(requests, {
          signal: abort.signal,
        }))
          responses.push(res);
      } catch {
        // aborted below
      }
    })();
    const bucket = () => slow.router.routing.limits.leaseBucket("stall")!;
    await within(2_000, () => bucket().waitFor(10) > 5_000); // all ten went to the shard
    const delivered = () => responses.reduce((n, r) => n + (r.tasks?.tasks.length ?? 0), 0);
    await slow.client("stall").enqueueBatch({ tasks: tasks(1, "W") });
    await within(2_000, () => delivered() === 1);
    // the stream holds a task: the shard asks its store what it still holds before it
    // answers a withdrawal, so it answers only once its store is back; the client's
    // answer comes first, without the nine credits, which stay with the shard
    const stall = 3 * shardTimeoutMs;
    await redis.call("CLIENT", "PAUSE", String(stall));
    requests.push(LeaseStreamRequest.fromPartial({ withdrawCredits: true, requestId: 1 }));
    await within(stall, () => responses.some((r) => r.withdrawn));
    expect(responses.find((r) => r.withdrawn)!.withdrawn!.credits).toBe(0);
    await new Promise((r) => setTimeout(r, stall));
    // the shard's late answer gave them back unused, and the client's nine credits went
    // to the shard again: they are paced by the rate once, not twice
    await slow.client("stall").enqueueBatch({ tasks: tasks(9, "W") });
    await within(1_500, () => delivered() === 10);
    abort.abort();
    await reading;
  } finally {
    abort.abort();
    redis.disconnect();
    await slow.close();
  }
}, 30_000);

test("credits a shard stream held when it closed are given back to the tenant's lease rate", async () => {
  // ten tokens that take ten seconds to come back on their own
  const slow = await routerCluster({
    server,
    router: { tenantLeaseRate: 1, rateBurstSeconds: 10 },
  });
  const requests = new Channel<LeaseStreamRequest>();
  const abort = new AbortController();
  let delivered = 0;
  const reading = (async () => {
    try {
      for await (const res of slow.client("broken").leaseStream(requests, { signal: abort.signal }))
        delivered += res.tasks?.tasks.length ?? 0;
    } catch {
      // aborted below
    }
  })();
  try {
    requests.push(LeaseStreamRequest.fromPartial({ subscribe: { commands: ["R"] }, credits: 10 }));
    const bucket = () => slow.router.routing.limits.leaseBucket("broken")!;
    await within(2_000, () => bucket().waitFor(10) > 5_000); // all ten went to shard a
    // a stops: its stream closes with the ten credits unused, and they are the tenant's
    // again (not charged a second time when the stream is opened again)
    await slow.stopShard("a");
    await within(3_000, () => bucket().waitFor(10) === 0);
    await slow.startShard("a");
    // (sent again until the router is connected to a again: the keys make it once)
    const batch = tasks(10, "R").map((t, i) => ({ ...t, idempotencyKey: `r${i}` }));
    await within(5_000, () =>
      slow
        .client("broken")
        .enqueueBatch({ tasks: batch })
        .then(
          () => true,
          () => false,
        ),
    );
    await within(3_000, () => delivered === 10);
  } finally {
    abort.abort();
    await reading;
    await slow.close();
  }
}, 30_000);
