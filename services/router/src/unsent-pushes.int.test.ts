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

test("pushes a slow client never read are given back through the router, their attempts not counted", async () => {
  const c = rc.client("t-slow");
  const queue = { command: "SLOW", tenant: "t-slow" };
  const n = 40;
  // 512 KiB each: the router reads the shard's pushes as they come, so the client's
  // backlog waits in the router, not in the shard's send queue
  const payload = Buffer.alloc(512 * 1024, 1);
  for (let i = 0; i < n; i += 10)
    await c.enqueueBatch({
      tasks: Array.from({ length: 10 }, () => ({ command: "SLOW", payload, maxAttempts: 1 })),
    });
  const requests = new Channel<LeaseStreamRequest>();
  requests.push(
    LeaseStreamRequest.fromPartial({ subscribe: { commands: ["SLOW"], maxBatch: 1 }, credits: n }),
  );
  const abort = new AbortController();
  const responses = c.leaseStream(requests, { signal: abort.signal })[Symbol.asyncIterator]();
  for (let i = 0; i < 3; i++) await responses.next(); // subscribed, then two tasks
  const engine = rc.workers.get("a")!.engine;
  await within(10_000, async () => (await engine.stats(queue)).leased === n);
  // the shard's pushes all reach the router (it reads them as they come)
  await sleep(500);
  abort.abort();
  await responses.next().catch(() => undefined);
  requests.close();
  await within(10_000, async () => (await engine.stats(queue)).leased === 0);
  const after = await engine.stats(queue);
  // those that reached the client's process (read or not: its transport buffers them)
  // were released as attempts, dead-lettered on their one attempt; those still queued in
  // the router for it never left, and are ready again (before: dead too)
  expect(after.ready + after.dead).toBe(n);
  expect(after.ready).toBeGreaterThan(0);
}, 60_000);
