import { createLogger } from "@codeq/server-kit";
import { setTimeout as sleep } from "node:timers/promises";
import { checkStartFailureLeavesNothing, freePort, RedisServer } from "@codeq/testing";
import { shardConfig } from "./config";
import { startShardWorker, withoutPassword } from "./shard-worker";

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

describe("a store that is not up when the worker starts", () => {
  const at = async (redisUrl: string, storeStartTimeoutMs: number) =>
    shardConfig({
      id: "a",
      listen: `127.0.0.1:${await freePort()}`,
      metricsListen: "",
      redisUrl,
      keyPrefix: `${server.keyPrefix}-late`,
      devIdentity: true,
      storeStartTimeoutMs,
    });

  test("is waited for: the worker starts once it answers", async () => {
    const late = await RedisServer.start({ spawnOnly: true });
    try {
      await late.kill(); // its port stays its own: restart() comes back on it
      const starting = startShardWorker(
        await at(late.url, 20_000),
        createLogger("start-failure", "silent"),
      );
      await sleep(1_500);
      await late.restart();
      const worker = await starting;
      await worker.stop();
    } finally {
      await late.stop();
    }
  }, 30_000);

  test("is given up on after storeStartTimeoutMs, naming the store without its password", async () => {
    const url = `redis://:s3cret@127.0.0.1:${await freePort()}`;
    const err = await startShardWorker(
      await at(url, 1_000),
      createLogger("start-failure", "silent"),
    ).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(
      /^cannot reach the store at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+ within 1000 ms \(.*ECONNREFUSED.*\): is it running/,
    );
    expect(err?.message).not.toContain("s3cret");
  });

  test("that refuses the password ends the wait at once, saying so", async () => {
    const locked = await RedisServer.start({ spawnOnly: true });
    try {
      const admin = locked.client();
      await admin.config("SET", "requirepass", "the-right-one");
      admin.disconnect();
      const started = Date.now();
      const err = await startShardWorker(
        await at(`redis://:the-wrong-one@127.0.0.1:${locked.port}`, 20_000),
        createLogger("start-failure", "silent"),
      ).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err?.message).toMatch(
        /^the store at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+ refused the credentials \(WRONGPASS/,
      );
      expect(Date.now() - started).toBeLessThan(10_000); // not the 20 s wait
    } finally {
      await locked.stop();
    }
  }, 30_000);
});

test("a store URL is shown with its password hidden, in the user info or a parameter", () => {
  expect(withoutPassword("redis://:pw@kv:6666")).toBe("redis://:***@kv:6666");
  expect(withoutPassword("redis://kv:6666/0?password=pw&db=1")).toBe(
    "redis://kv:6666/0?password=***&db=1",
  );
  expect(withoutPassword("not a url :pw@")).toBe("(the configured URL)");
});
