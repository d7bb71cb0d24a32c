import { createLogger } from "@codeq/server-kit";
import { checkStartFailureLeavesNothing, RedisServer } from "@codeq/testing";
import { shardConfig } from "./config";
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

test.each(["grpc", "metrics"] as const)(
  "a worker whose %s address is taken fails to start and leaves nothing open",
  (which) =>
    checkStartFailureLeavesNothing(server, which, (listen, metricsListen) =>
      startShardWorker(config(listen, metricsListen), createLogger("start-failure", "silent")),
    ),
);
