import { createLogger } from "@codeq/server-kit";
import { RedisMapSource } from "@codeq/shardmap";
import { checkStartFailureLeavesNothing, freePort, RedisServer } from "@codeq/testing";
import { routerConfig } from "./config";
import { startRouter } from "./router";

/**
 * A router that cannot start (its address or its metrics address taken) fails with
 * the reason and leaves nothing open behind it: no connection to the control store,
 * no server on the other address.
 */

let server: RedisServer;
const prefix = "router-start-failure";
beforeAll(async () => {
  server = await RedisServer.start();
  const source = new RedisMapSource({ url: server.url, prefix });
  await source.compareAndSet(
    0,
    {
      shards: { a: { endpoint: `127.0.0.1:${await freePort()}`, state: "active" } },
      defaultShard: "a",
      commands: {},
      tenants: {},
      migrations: [],
    },
    { actor: "test", action: "Bootstrap", summary: "" },
  );
  await source.close();
});
afterAll(() => server.stop());

test.each(["grpc", "metrics"] as const)(
  "a router whose %s address is taken fails to start and leaves nothing open",
  (which) =>
    checkStartFailureLeavesNothing(server, which, (listen, metricsListen) =>
      startRouter(
        routerConfig({
          listen,
          metricsListen,
          controlUrl: server.url,
          controlPrefix: prefix,
          devIdentity: true,
        }),
        createLogger("start-failure", "silent"),
      ),
    ),
);
