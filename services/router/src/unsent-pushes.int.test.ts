import { setTimeout as sleep } from "node:timers/promises";
import { LeaseStreamRequest } from "@codeq/proto";
import { Channel } from "@codeq/server-kit";
import { RedisServer } from "@codeq/testing";
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
  const responses = c.leaseStream(requests, { signal: abort.signal })[Symbol.asyncIterator]();
  for (let i = 0; i < 3; i++) await responses.next(); // subscribed, then two tasks
  const engine = rc.workers.get("a")!.engine;
  await within(20_000, async () => (await engine.stats(queue)).leased === n);
  // the shard's pushes all reach the router (it reads them as they come)
  await sleep(500);
  abort.abort();
  await responses.next().catch(() => undefined);
  requests.close();
  await within(20_000, async () => (await engine.stats(queue)).leased === 0);
  return engine.stats(queue);
}

// Those that reached the client's process (read or not: its transport reads ahead, a
// few hundred KiB to some MiB as HTTP/2 windows grow) were released as attempts,
// dead-lettered on their one attempt; those still queued in the router for it never
// left, and are ready again (before: all dead). 1,500 tasks of 16 KiB (24 MiB): far
// more than the client's transport takes in, and more than a shard takes back in one
// call (1,000 tokens).
test("pushes a slow client never read are given back through the router, their attempts not counted", async () => {
  const after = await slowClientCancels("t-slow", 1500, 16 * 1024);
  expect(after.ready + after.dead).toBe(1500);
  expect(after.ready).toBeGreaterThan(1000);
}, 60_000);
