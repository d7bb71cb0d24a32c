import * as fs from "node:fs";
import * as path from "node:path";
import { RedisServer, startRelay, type Relay } from "@codeq/testing";
import { ShardMapError, VersionConflictError } from "./errors";
import { RedisMapSource } from "./redis-map-source";
import { auditKey, changedChannel, shardMapKey } from "./shard-map";
import { change, draft, waitFor } from "./test/fixtures";
import { describeMapSource } from "./test/source-contract";

let server: RedisServer;
let counter = 0;
beforeAll(async () => {
  server = await RedisServer.start();
});
afterAll(async () => {
  await server.stop();
});

describeMapSource("RedisMapSource", async ({ auditCap }) => {
  const prefix = `${server.keyPrefix}-${++counter}`;
  const sources: RedisMapSource[] = [];
  return {
    open() {
      const source = new RedisMapSource({ url: server.url, prefix, auditCap });
      sources.push(source);
      return source;
    },
    async close() {
      for (const source of sources) await source.close();
    },
  };
});

describe("RedisMapSource in the control store", () => {
  const prefix = () => `${server.keyPrefix}-${++counter}`;

  it("keeps the map, the audit log and the announcements under the documented names", async () => {
    const p = prefix();
    const source = new RedisMapSource({ url: server.url, prefix: p });
    const raw = server.client();
    const listener = server.client();
    try {
      const heard: string[] = [];
      listener.on("message", (channel: string, message: string) =>
        heard.push(`${channel} ${message}`),
      );
      await listener.subscribe(`${p}:ctl:shardmap:changed`);
      expect(changedChannel(p)).toBe(`${p}:ctl:shardmap:changed`);
      await source.compareAndSet(0, draft(), change("hello"));
      const stored = JSON.parse((await raw.get(`${p}:ctl:shardmap`))!);
      expect(stored).toMatchObject({
        version: 1,
        defaultShard: "a",
        commands: { SEND_EMAIL: "b" },
      });
      expect(shardMapKey(p)).toBe(`${p}:ctl:shardmap`);
      const audit = await raw.lrange(auditKey(p), 0, -1);
      expect(audit.map((e) => JSON.parse(e))).toEqual([
        expect.objectContaining({ versionBefore: 0, versionAfter: 1, summary: "hello" }),
      ]);
      await waitFor(() => heard.length > 0, 2_000, "the raw announcement");
      expect(heard).toEqual([`${p}:ctl:shardmap:changed 1`]);
    } finally {
      raw.disconnect();
      listener.disconnect();
      await source.close();
    }
  });

  it("takes a compare-and-set sent again after a lost reply for the write it made, not a conflict", async () => {
    const p = prefix();
    const raw = server.client();
    const script = fs.readFileSync(
      path.join(__dirname, "..", "lua", "compare-and-set-2.lua"),
      "utf8",
    );
    // the script's arguments as a call sends them, and as ioredis sends them again
    const cas = (entry: string) =>
      raw.eval(script, 2, shardMapKey(p), auditKey(p), "0", '{"version":1}', entry, "100");
    try {
      expect(await cas('{"call":"first"}')).toEqual([0, 1]);
      expect(await cas('{"call":"first"}')).toEqual([0, 1]);
      expect(await raw.llen(auditKey(p))).toBe(1);
      // the same map from another call (its own entry) is a conflict
      expect(await cas('{"call":"other"}')).toEqual([-1, 1]);
    } finally {
      raw.disconnect();
    }
  });

  it("refuses the same edit from two writers in the same millisecond: the second conflicts", async () => {
    const p = prefix();
    const source = new RedisMapSource({ url: server.url, prefix: p, now: () => 1_700_000_000_000 });
    try {
      const first = await source.compareAndSet(0, draft(), change("hello"));
      await expect(source.compareAndSet(0, draft(), change("hello"))).rejects.toBeInstanceOf(
        VersionConflictError,
      );
      // what the audit log lists carries nothing of the call's own id
      expect(await source.listAudit()).toEqual([
        expect.not.objectContaining({ call: expect.anything() }),
      ]);
      expect((await source.get())!.version).toBe(first.version);
    } finally {
      await source.close();
    }
  });

  it("reports a stored value that is not a valid map instead of using or overwriting it", async () => {
    const p = prefix();
    const source = new RedisMapSource({ url: server.url, prefix: p });
    const raw = server.client();
    try {
      await raw.set(shardMapKey(p), "not json");
      await expect(source.get()).rejects.toThrow(ShardMapError);
      await expect(source.compareAndSet(0, draft(), change())).rejects.toThrow(
        /is not a shard map .* fix or delete it by hand/,
      );
      expect(await raw.get(shardMapKey(p))).toBe("not json");

      await raw.set(shardMapKey(p), JSON.stringify({ version: 4, shards: {}, defaultShard: "a" }));
      const err = await source.get().catch((e) => e);
      expect(err).toBeInstanceOf(ShardMapError);
      expect((err as ShardMapError).problems).toEqual(
        expect.arrayContaining([
          "updatedAtMs: is required",
          'defaultShard: shard "a" is not in shards',
        ]),
      );
      // A well-formed version is enough to replace a broken map by compare-and-set.
      await expect(source.compareAndSet(4, draft(), change())).resolves.toMatchObject({
        version: 5,
      });
    } finally {
      raw.disconnect();
      await source.close();
    }
  });
});

describe("RedisMapSource across a control store restart", () => {
  let own: RedisServer;
  beforeAll(async () => {
    own = await RedisServer.start({ persistent: true, spawnOnly: true });
  });
  afterAll(async () => {
    await own.stop();
  });

  it("subscribes again after reconnecting and re-announces the stored version", async () => {
    const watched = new RedisMapSource({ url: own.url, prefix: own.keyPrefix });
    const writer = new RedisMapSource({ url: own.url, prefix: own.keyPrefix });
    const heard: number[] = [];
    const unwatch = watched.watch((v) => heard.push(v));
    try {
      await waitFor(() => heard.length > 0, 2_000, "the watch to be live");
      await writer.compareAndSet(0, draft(), change());
      await waitFor(() => heard.includes(1), 2_000, "announcement of version 1");
      expect(heard).toEqual([0, 1]);

      await own.kill();
      await own.restart();
      // The catch-up after re-subscribing proves the subscription is back.
      await waitFor(() => heard.length === 3, 5_000, "the re-announcement after reconnect");
      expect(heard).toEqual([0, 1, 1]);
      await writer.compareAndSet(1, draft({ defaultShard: "b" }), change());
      await waitFor(() => heard.includes(2), 5_000, "announcement of version 2");
      expect(heard).toEqual([0, 1, 1, 2]);
    } finally {
      unwatch();
      await watched.close();
      await writer.close();
    }
  });
});

describe("RedisMapSource over a connection that fails", () => {
  let relay: Relay;
  let url: string;
  const prefix = () => `${server.keyPrefix}-${++counter}`;
  beforeEach(async () => {
    relay = await startRelay(server.host, server.port);
    url = `redis://${server.host}:${relay.port}`;
  });
  afterEach(async () => {
    await relay.close();
  });

  it("notices an announcements connection gone silent by its pings, and catches up", async () => {
    const p = prefix();
    const errors: string[] = [];
    const watched = new RedisMapSource({
      url,
      prefix: p,
      pingMs: 100,
      redisOptions: { socketTimeout: 300 },
      onError: (err) => errors.push(err.message),
    });
    const writer = new RedisMapSource({ url: server.url, prefix: p });
    const heard: number[] = [];
    const unwatch = watched.watch((v) => heard.push(v));
    try {
      await waitFor(() => heard.length > 0, 2_000, "the watch to be live");
      expect(watched.announcing()).toBe(true);
      // the host goes away without closing anything: no byte passes, nothing closes
      relay.silenceOpen();
      await writer.compareAndSet(0, draft(), change());
      // the announcement was lost; the ping found the connection dead, and the new one
      // re-announced the stored version
      await waitFor(() => heard.includes(1), 5_000, "version 1 after the silent connection");
      expect(errors).toEqual(expect.arrayContaining([expect.stringMatching(/Socket timeout/)]));
      await waitFor(() => watched.announcing(), 2_000, "the subscription to be live again");
    } finally {
      unwatch();
      await watched.close();
      await writer.close();
    }
  });

  // ioredis sends a command whose reply a dropped connection lost again only when its
  // first reconnect succeeds; here it is refused, and the command fails
  const loseReplyAndRefuse = (refuseMs: number) =>
    relay.dropNextReply((reply) => {
      const written = reply.toString().startsWith("*2\r\n:0\r\n:2\r\n");
      if (written) relay.refuseFor(refuseMs);
      return written;
    });

  it("answers a write whose reply was lost, and not sent again, by the audit log: written", async () => {
    const p = prefix();
    const source = new RedisMapSource({
      url,
      prefix: p,
      // the first reconnect comes while the store is away, the second after it is back
      redisOptions: { retryStrategy: (times: number) => (times === 1 ? 10 : 1_000) },
    });
    const heard: number[] = [];
    const listener = new RedisMapSource({ url: server.url, prefix: p });
    const unwatch = listener.watch((v) => heard.push(v));
    try {
      await source.compareAndSet(0, draft(), change());
      loseReplyAndRefuse(400);
      const written = await source.compareAndSet(1, draft({ defaultShard: "b" }), change());
      expect(written.version).toBe(2);
      expect(relay.dropped).toBe(1);
      expect((await listener.get())!.version).toBe(2);
      // written once, and announced
      expect(await listener.listAudit()).toHaveLength(2);
      await waitFor(() => heard.includes(2), 2_000, "the announcement of version 2");
    } finally {
      unwatch();
      await listener.close();
      await source.close();
    }
  });

  it("says the outcome is not known when the audit log cannot be read either", async () => {
    const p = prefix();
    const source = new RedisMapSource({
      url,
      prefix: p,
      redisOptions: { retryStrategy: () => 10 },
    });
    try {
      await source.compareAndSet(0, draft(), change());
      loseReplyAndRefuse(1_000);
      await expect(source.compareAndSet(1, draft({ defaultShard: "b" }), change())).rejects.toThrow(
        /whether the change was written is not known: read the map/,
      );
      // it was written
      const direct = new RedisMapSource({ url: server.url, prefix: p });
      expect((await direct.get())!.version).toBe(2);
      await direct.close();
    } finally {
      await source.close();
    }
  });
});
