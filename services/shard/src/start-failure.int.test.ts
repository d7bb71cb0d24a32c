import * as net from "node:net";
import { once } from "node:events";
import { createLogger } from "@codeq/server-kit";
import { freePort, RedisServer } from "@codeq/testing";
import { shardConfig } from "./config";
import { eventually } from "./test/fixture";
import { startShardWorker } from "./shard-worker";

/**
 * A shard worker that cannot start (its address or its metrics address taken) fails
 * with the reason and leaves nothing open behind it: no connection to its store, no
 * server on the other address.
 */

let server: RedisServer;
beforeAll(async () => {
  server = await RedisServer.start();
});
afterAll(() => server.stop());

/** Listens on a free port of 127.0.0.1 until closed. */
async function occupy(): Promise<{ address: string; close(): Promise<void> }> {
  const taken = net.createServer();
  taken.listen(await freePort(), "127.0.0.1");
  await once(taken, "listening");
  const { port } = taken.address() as net.AddressInfo;
  return { address: `127.0.0.1:${port}`, close: () => new Promise((r) => taken.close(() => r())) };
}

/** Clients connected to the store, not counting the one asking. */
async function storeClients(): Promise<number> {
  const admin = server.client();
  try {
    const list = (await admin.client("LIST")) as string;
    return list.trim().split("\n").length - 1;
  } finally {
    admin.disconnect();
  }
}

/** A standalone worker's config on the test's store (one with a map is in the router's cluster test). */
const config = (listen: string, metricsListen: string) =>
  shardConfig({
    id: "a",
    listen,
    metricsListen,
    redisUrl: server.url,
    keyPrefix: `${server.keyPrefix}-sf`,
    devIdentity: true,
  });

test.each([
  ["gRPC address", "grpc"],
  ["metrics address", "metrics"],
] as const)(
  "a worker whose %s is taken fails to start and leaves nothing open",
  async (_, which) => {
    const before = await storeClients();
    const taken = await occupy();
    const other = `127.0.0.1:${await freePort()}`;
    try {
      const [listen, metricsListen] =
        which === "grpc" ? [taken.address, other] : [other, taken.address];
      await expect(
        startShardWorker(config(listen, metricsListen), createLogger("start-failure", "silent")),
      ).rejects.toThrow(/EADDRINUSE|address already in use/);
      await eventually(async () => (await storeClients()) === before);
      // the other address is free again
      const again = net.createServer();
      again.listen(Number(other.split(":")[1]), "127.0.0.1");
      await once(again, "listening");
      await new Promise((r) => again.close(r));
    } finally {
      await taken.close();
    }
  },
);
