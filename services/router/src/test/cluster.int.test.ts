import * as net from "node:net";
import { once } from "node:events";
import { freePort, RedisServer } from "@codeq/testing";
import { routerCluster } from "./cluster";

/** Listens on a free port of 127.0.0.1 until closed. */
async function occupy(): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer();
  server.listen(await freePort(), "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as net.AddressInfo).port;
  return { port, close: () => new Promise((r) => server.close(() => r())) };
}

test("a cluster that cannot start stops what it had started, and says why", async () => {
  const server = await RedisServer.start();
  const busy = await occupy();
  const portA = await freePort();
  try {
    await expect(
      routerCluster({
        server,
        perShard: {
          a: { listen: `127.0.0.1:${portA}` },
          b: { listen: `127.0.0.1:${busy.port}` }, // taken: shard b cannot start
        },
      }),
    ).rejects.toThrow(/EADDRINUSE|address already in use/);
    // shard a had started; its address is free again
    const again = net.createServer();
    again.listen(portA, "127.0.0.1");
    await once(again, "listening");
    await new Promise((r) => again.close(r));
  } finally {
    await busy.close();
    await server.stop();
  }
});
