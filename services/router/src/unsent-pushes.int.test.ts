import { LeaseStreamRequest } from "@codeq/proto";
import { Channel } from "@codeq/server-kit";
import { RedisServer, steady } from "@codeq/testing";
import { FanInSession } from "./fan-in";
import { routerCluster, within, type RouterCluster } from "./test/cluster";

let server: RedisServer;
let rc: RouterCluster;
beforeAll(async () => {
  server = await RedisServer.start();
  rc = await routerCluster({ server, commands: { SLOW: "a" } });
});
afterAll(async () => {
  await rc.close();
  await server.stop();
});

/**
 * `n` tasks of `bytes` each on one maxAttempts, pushed one a message to a client that
 * reads two and then cancels; the queue's counts once the shard holds no lease.
 */
async function slowClientCancels(tenant: string, n: number, bytes: number) {
  const c = rc.client(tenant);
  const queue = { command: "SLOW", tenant };
  const payload = Buffer.alloc(bytes, 1);
  const per = Math.max(1, Math.min(100, Math.floor((2 * 1024 * 1024) / bytes)));
  for (let i = 0; i < n; i += per)
    await c.enqueueBatch({
      tasks: Array.from({ length: Math.min(per, n - i) }, () => ({
        command: "SLOW",
        payload,
        maxAttempts: 1,
      })),
    });
  const requests = new Channel<LeaseStreamRequest>();
  requests.push(
    LeaseStreamRequest.fromPartial({ subscribe: { commands: ["SLOW"], maxBatch: 1 }, credits: n }),
  );
  const abort = new AbortController();
  // the router's session of this stream, to see its queue for the client
  const onMessage = jest.spyOn(
    FanInSession.prototype as unknown as { onMessage: () => void },
    "onMessage",
  );
  const responses = c.leaseStream(requests, { signal: abort.signal })[Symbol.asyncIterator]();
  for (let i = 0; i < 3; i++) await responses.next(); // subscribed, then two tasks
  const engine = rc.workers.get("a")!.engine;
  // the shard leases and pushes until the transports and the router's queue for the
  // client are full (the router then reads the shard's stream no further)
  const session = onMessage.mock.contexts[0] as { client: { queued: number } };
  await within(20_000, () => session.client.queued === 16);
  onMessage.mockRestore();
  await steady(async () => (await engine.stats(queue)).leased, 300, 20_000);
  const givenBack = async () =>
    (await rc.workers.get("a")!.metrics.givenBack.get()).values.reduce((n, v) => n + v.value, 0);
  const before = await givenBack();
  abort.abort();
  await responses.next().catch(() => undefined);
  requests.close();
  await within(20_000, async () => (await engine.stats(queue)).leased === 0);
  return { ...(await engine.stats(queue)), givenBack: (await givenBack()) - before };
}

// Those that reached the client's process (read or not: its transport reads ahead, a
// few hundred KiB to some MiB as HTTP/2 windows grow) were released as attempts,
// dead-lettered on their one attempt; those still queued in the router for it never
// left, and are ready again (before: all dead), as are those the shard never leased
// (held back by the router). 1,500 tasks of 16 KiB (24 MiB): far more than the
// client's transport takes in.
test("pushes a slow client never read are given back through the router, their attempts not counted", async () => {
  const after = await slowClientCancels("t-slow", 1500, 16 * 1024);
  expect(after.ready + after.dead).toBe(1500);
  expect(after.ready).toBeGreaterThan(1000);
  // the pushes queued in the router for the client (16 messages of one task), and what
  // the shard stream held back sent once the client left; the shard alone gives back a
  // push or two of its own
  expect(after.givenBack).toBeGreaterThanOrEqual(16);
}, 60_000);
