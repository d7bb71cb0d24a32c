import {
  FENCE_REFRESH_MS,
  MapCache,
  MemoryMapSource,
  type MapSource,
  type ShardMapDraft,
} from "@codeq/shardmap";
import { NotOwnerError } from "./errors";
import { ShardFence } from "./fence";

const CHANGE = { actor: "test", action: "test", summary: "" };
const draft = (overrides: Partial<ShardMapDraft> = {}): ShardMapDraft => ({
  shards: {
    a: { endpoint: "127.0.0.1:1", state: "active" },
    b: { endpoint: "127.0.0.1:2", state: "active" },
    c: { endpoint: "127.0.0.1:3", state: "active" },
  },
  defaultShard: "a",
  commands: { X: "b", Y: "c" },
  tenants: { "Z/vip": "b" },
  migrations: [],
  ...overrides,
});

/** How reads of a `deaf` source go: as the memory source's, never answered, or failing. */
let reads: "answer" | "hang" | "fail" = "answer";

/** A source whose announcements are lost: the cache only learns of changes by reading. */
function deaf(source: MemoryMapSource): MapSource {
  return {
    get: () =>
      reads === "hang"
        ? new Promise(() => {})
        : reads === "fail"
          ? Promise.reject(new Error("connection refused"))
          : source.get(),
    compareAndSet: (v, next, change) => source.compareAndSet(v, next, change),
    watch: () => () => {},
    listAudit: (limit, offset) => source.listAudit(limit, offset),
    close: () => source.close(),
  };
}

describe("ShardFence", () => {
  let source: MemoryMapSource;
  let cache: MapCache;
  let fence: ShardFence;
  beforeEach(async () => {
    source = new MemoryMapSource();
    await source.compareAndSet(0, draft(), CHANGE);
    cache = new MapCache(deaf(source), { pollMs: 3_600_000 });
    await cache.start();
    fence = new ShardFence("a", cache);
  });
  afterEach(() => {
    reads = "answer";
    cache.stop();
  });

  it("lets through queues the shard owns by default, mapping or override", async () => {
    await expect(
      fence.check([
        { command: "Z", tenant: "t" },
        { command: "OTHER", tenant: "vip" },
      ]),
    ).resolves.toBeUndefined();
  });

  it("names the first queue it does not own, its owner, the version, and how many more", async () => {
    const err = await fence
      .check([
        { command: "OWNED", tenant: "t" },
        { command: "X", tenant: "t" },
        { command: "Y", tenant: "t" },
        { command: "Z", tenant: "vip" },
      ])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotOwnerError);
    expect(err).toMatchObject({ command: "X", tenant: "t", owner: "b", mapVersion: 1 });
    expect((err as Error).message).toBe(
      "shard a does not own queue X for tenant t under shard map version 1 (owner: b) (and 2 more queue(s) of this request); refresh the shard map and retry",
    );
  });

  it("re-reads the map before refusing only when the caller saw a newer version", async () => {
    await source.compareAndSet(1, draft({ commands: { Y: "c" } }), CHANGE);
    const x = [{ command: "X", tenant: "t" }];
    await expect(fence.check(x, 1)).rejects.toMatchObject({ mapVersion: 1 });
    await expect(fence.check(x)).rejects.toMatchObject({ mapVersion: 1 });
    await expect(fence.check(x, 2)).resolves.toBeUndefined();
    expect(fence.mapVersion).toBe(2);
  });

  it("waits for that read at most FENCE_REFRESH_MS, and not at all while the control store fails", async () => {
    const x = [{ command: "X", tenant: "t" }];
    reads = "hang";
    let started = Date.now();
    await expect(fence.check(x, 2)).rejects.toMatchObject({ mapVersion: 1 });
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(FENCE_REFRESH_MS - 50);
    expect(waited).toBeLessThan(FENCE_REFRESH_MS + 2_000);

    const stopped = new MapCache(deaf(source), { pollMs: 3_600_000 });
    reads = "answer";
    await stopped.start();
    reads = "fail";
    await stopped.refresh();
    expect(stopped.status().lastError).toBeDefined();
    reads = "hang";
    started = Date.now();
    await expect(new ShardFence("a", stopped).check(x, 2)).rejects.toMatchObject({ mapVersion: 1 });
    expect(Date.now() - started).toBeLessThan(FENCE_REFRESH_MS / 2);
    stopped.stop();
  });
  describe("stores admitted, and what waits for them", () => {
    const owned = [{ command: "OWNED", tenant: "t" }];
    /** Whether `p` has resolved by the time pending callbacks have run. */
    const resolved = async (p: Promise<void>) => {
      let done = false;
      void p.then(() => (done = true));
      await new Promise((r) => setImmediate(r));
      return done;
    };

    it("settles at once with no store admitted, or only refused ones", async () => {
      expect(await resolved(fence.settled())).toBe(true);
      expect(() => fence.admit([{ command: "X", tenant: "t" }])).toThrow(NotOwnerError);
      expect(await resolved(fence.settled())).toBe(true);
    });

    it("waits for every store admitted before it, and for none admitted after", async () => {
      const first = fence.admit(owned);
      const second = fence.admit(owned);
      const waiting = fence.settled();
      const later = fence.admit(owned);
      fence.ended(later);
      expect(await resolved(waiting)).toBe(false);
      fence.ended(second);
      expect(await resolved(waiting)).toBe(false);
      fence.ended(first);
      expect(await resolved(waiting)).toBe(true);
    });

    it("a later wait also waits for the stores an earlier one waits for", async () => {
      const first = fence.admit(owned);
      const early = fence.settled();
      const second = fence.admit(owned);
      const late = fence.settled();
      fence.ended(second);
      expect(await resolved(late)).toBe(false);
      fence.ended(first);
      expect(await resolved(early)).toBe(true);
      expect(await resolved(late)).toBe(true);
      // a wait with nothing admitted since the last but older stores open waits for those
      const older = fence.admit(owned);
      const once = fence.settled();
      const again = fence.settled();
      expect(await resolved(again)).toBe(false);
      fence.ended(older);
      expect(await resolved(once)).toBe(true);
      expect(await resolved(again)).toBe(true);
      // a wait whose caller leaves is dropped; the stores go on being counted
      const pending = fence.admit(owned);
      const leaving = new AbortController();
      const left = fence.settled(leaving.signal);
      const staying = fence.settled();
      leaving.abort(new Error("the caller left"));
      await expect(left).rejects.toThrow("the caller left");
      await expect(fence.settled(leaving.signal)).rejects.toThrow("the caller left");
      expect(await resolved(staying)).toBe(false);
      fence.ended(pending);
      expect(await resolved(staying)).toBe(true);
      // and the count starts afresh
      const third = fence.admit(owned);
      const next = fence.settled();
      expect(await resolved(next)).toBe(false);
      fence.ended(third);
      expect(await resolved(next)).toBe(true);
    });
  });
});
