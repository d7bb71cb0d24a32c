import { freePort, occupyPort, portIsFree, RedisServer } from "@codeq/testing";
import { routerCluster } from "./cluster";

test("a cluster that cannot start stops what it had started, and says why", async () => {
  const server = await RedisServer.start();
  const busy = await occupyPort();
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
    await portIsFree(portA); // shard a had started; its address is free again
  } finally {
    await busy.close();
    await server.stop();
  }
});
