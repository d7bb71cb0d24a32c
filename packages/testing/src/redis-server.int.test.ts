import * as fs from "node:fs";
import { EXTERNAL_REDIS_ENV, RedisServer } from "./redis-server";
import { isAlive as alive } from "./process-alive";

describe("RedisServer", () => {
  const saved = process.env[EXTERNAL_REDIS_ENV];
  afterEach(() => {
    if (saved === undefined) delete process.env[EXTERNAL_REDIS_ENV];
    else process.env[EXTERNAL_REDIS_ENV] = saved;
  });

  it("spawns a redis-server on a free port with its own data dir and stops it by PID", async () => {
    const server = await RedisServer.start({ spawnOnly: true });
    const pid = server.pid!;
    const dataDir = server.dataDir!;
    expect(server.spawned).toBe(true);
    expect(alive(pid)).toBe(true);
    expect(fs.existsSync(dataDir)).toBe(true);

    const redis = server.client();
    await redis.set(`${server.keyPrefix}:k`, "v");
    expect(await redis.get(`${server.keyPrefix}:k`)).toBe("v");
    redis.disconnect();

    await server.stop();
    expect(alive(pid)).toBe(false);
    expect(fs.existsSync(dataDir)).toBe(false);
  });

  it("gives two servers distinct ports and key prefixes", async () => {
    const [a, b] = await Promise.all([
      RedisServer.start({ spawnOnly: true }),
      RedisServer.start({ spawnOnly: true }),
    ]);
    try {
      expect(a.port).not.toBe(b.port);
      expect(a.keyPrefix).not.toBe(b.keyPrefix);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it("keeps data across restart when persistent, and loses nothing acknowledged", async () => {
    const server = await RedisServer.start({ spawnOnly: true, persistent: true });
    try {
      let redis = server.client();
      await redis.set(`${server.keyPrefix}:kept`, "1");
      redis.disconnect();
      const before = server.pid;
      await server.restart();
      expect(server.pid).not.toBe(before);
      redis = server.client();
      expect(await redis.get(`${server.keyPrefix}:kept`)).toBe("1");
      redis.disconnect();
    } finally {
      await server.stop();
    }
  });

  it("uses the external server named by CODEQ_TEST_REDIS_URL with a unique prefix, and clears only that prefix", async () => {
    const backing = await RedisServer.start({ spawnOnly: true });
    try {
      process.env[EXTERNAL_REDIS_ENV] = backing.url;
      const external = await RedisServer.start();
      expect(external.spawned).toBe(false);
      expect(external.pid).toBeUndefined();
      expect(external.port).toBe(backing.port);
      expect(external.keyPrefix).not.toBe(backing.keyPrefix);

      const redis = backing.client();
      await redis.set(`${external.keyPrefix}:a`, "1");
      await redis.set(`${external.keyPrefix}:b`, "2");
      await redis.set("someone-else:key", "3");
      await external.stop();
      expect(await redis.exists(`${external.keyPrefix}:a`, `${external.keyPrefix}:b`)).toBe(0);
      expect(await redis.get("someone-else:key")).toBe("3");
      redis.disconnect();
      await expect(external.kill()).rejects.toThrow(/external/);
    } finally {
      await backing.stop();
    }
  });

  it("fails with a clear message when the binary is missing", async () => {
    const savedBin = process.env.CODEQ_REDIS_SERVER_BIN;
    process.env.CODEQ_REDIS_SERVER_BIN = "/nonexistent/redis-server";
    try {
      await expect(RedisServer.start({ spawnOnly: true })).rejects.toThrow(/ensure-deps/);
    } finally {
      if (savedBin === undefined) delete process.env.CODEQ_REDIS_SERVER_BIN;
      else process.env.CODEQ_REDIS_SERVER_BIN = savedBin;
    }
  });
});
