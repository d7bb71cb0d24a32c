import { RedisServer } from "@codeq/testing";
import { MapCache } from "./map-cache";
import { RedisMapSource } from "./redis-map-source";
import { change, draft, waitFor } from "./test/fixtures";
import { TestSource } from "./test/test-source";

const HOUR = 3_600_000;

describe("MapCache over a real control store", () => {
  let server: RedisServer;
  let counter = 0;
  const cleanups: Array<() => unknown> = [];
  beforeAll(async () => {
    server = await RedisServer.start();
  });
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()!();
  });
  afterAll(async () => {
    await server.stop();
  });

  /** A writer (an admin) and a reader's source (a router) on one fresh prefix. */
  const sources = () => {
    const prefix = `${server.keyPrefix}-${++counter}`;
    const writer = new RedisMapSource({ url: server.url, prefix });
    const reader = new RedisMapSource({ url: server.url, prefix });
    cleanups.push(
      () => writer.close(),
      () => reader.close(),
    );
    return { writer, reader };
  };

  it("receives a change through the announcement within a second, with polling off", async () => {
    const { writer, reader } = sources();
    await writer.compareAndSet(0, draft(), change());
    const cache = new MapCache(reader, { pollMs: HOUR });
    cleanups.push(() => cache.stop());
    await cache.start();
    const written = Date.now();
    await writer.compareAndSet(1, draft({ commands: { SEND_EMAIL: "c" } }), change());
    await waitFor(() => cache.status().version === 2, 1_000, "version 2 through the announcement");
    expect(Date.now() - written).toBeLessThan(1_000);
    expect(cache.current().commands).toEqual({ SEND_EMAIL: "c" });
  });

  it("receives a change through polling alone when announcements are lost", async () => {
    const { writer, reader } = sources();
    const lossy = new TestSource(reader);
    lossy.dropAnnouncements = true;
    await writer.compareAndSet(0, draft(), change());
    const cache = new MapCache(lossy, { pollMs: 100 });
    cleanups.push(() => cache.stop());
    await cache.start();
    const refreshes = cache.status().counters.refreshes;
    await writer.compareAndSet(1, draft({ defaultShard: "b" }), change());
    await waitFor(() => cache.status().version === 2, 1_000, "version 2 through polling");
    expect(cache.current().defaultShard).toBe("b");
    expect(cache.status().counters.refreshes).toBeGreaterThan(refreshes);
  });
});

describe("MapCache while the control store is down", () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await RedisServer.start({ persistent: true, spawnOnly: true });
  });
  afterAll(async () => {
    await server.stop();
  });

  it("serves the last map, reports stale with errors, and recovers when it returns", async () => {
    const writer = new RedisMapSource({ url: server.url, prefix: server.keyPrefix });
    const reader = new RedisMapSource({ url: server.url, prefix: server.keyPrefix });
    const cache = new MapCache(reader, { pollMs: 200, retryMs: 50, refreshTimeoutMs: 500 });
    try {
      await writer.compareAndSet(0, draft(), change());
      const loaded = await cache.start();

      await server.kill();
      // Several failed refreshes: the connection's reconnect backoff reaches its cap.
      await waitFor(() => cache.status().counters.errors >= 3, 5_000, "failed refreshes");
      for (let i = 0; i < 3; i++) expect(cache.current()).toBe(loaded);
      const down = cache.status();
      expect(down.stale).toBe(true);
      expect(down.lastError).toBeInstanceOf(Error);
      expect(down.version).toBe(1);

      await server.restart();
      const restarted = Date.now();
      await waitFor(() => !cache.status().stale, 5_000, "the cache to recover");
      expect(Date.now() - restarted).toBeLessThan(3_000);
      expect(cache.status().lastError).toBeUndefined();
      await writer.compareAndSet(1, draft({ defaultShard: "c" }), change());
      await waitFor(() => cache.status().version === 2, 2_000, "a change after recovery");
      expect(cache.current().defaultShard).toBe("c");
    } finally {
      cache.stop();
      await reader.close();
      await writer.close();
    }
  });
});
