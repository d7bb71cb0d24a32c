import { MapNotLoadedError } from "./errors";
import { MapCache, type MapCacheOptions } from "./map-cache";
import { MemoryMapSource } from "./memory-map-source";
import type { ShardMap } from "./shard-map";
import { change, draft, sleep, waitFor } from "./test/fixtures";
import { TestSource } from "./test/test-source";

const HOUR = 3_600_000;

describe("MapCache over the in-memory source", () => {
  let memory: MemoryMapSource;
  let source: TestSource;
  let caches: MapCache[] = [];
  const cache = (options: MapCacheOptions = {}) => {
    const c = new MapCache(source, { pollMs: HOUR, ...options });
    caches.push(c);
    return c;
  };
  const write = async (overrides = {}) => {
    const current = await memory.get();
    return memory.compareAndSet(current?.version ?? 0, draft(overrides), change());
  };

  beforeEach(() => {
    memory = new MemoryMapSource();
    source = new TestSource(memory);
  });
  afterEach(() => {
    for (const c of caches) c.stop();
    caches = [];
  });

  it("loads the map at start and serves it, counting hits", async () => {
    await write();
    const c = cache();
    expect(() => c.current()).toThrow(MapNotLoadedError);
    const loaded = await c.start();
    expect(loaded.version).toBe(1);
    for (let i = 0; i < 3; i++) expect(c.current()).toBe(loaded);
    const status = c.status();
    expect(status).toMatchObject({ version: 1, stale: false, counters: { hits: 3, errors: 0 } });
    expect(status.counters.refreshes).toBeGreaterThanOrEqual(1);
    expect(status.loadedAtMs).toBeGreaterThan(0);
    expect(status.lastError).toBeUndefined();
  });

  it("keeps trying at start until a map exists", async () => {
    const c = cache({ retryMs: 10 });
    const started = c.start();
    await sleep(50);
    await write({ defaultShard: "b" });
    expect(await started).toMatchObject({ version: 1, defaultShard: "b" });
    expect(c.status().counters.errors).toBeGreaterThanOrEqual(1);
  });

  it("gives up at start after startTimeoutMs, with the last failure as cause", async () => {
    source.failWith = new Error("control store down");
    const c = cache({ retryMs: 10, startTimeoutMs: 60 });
    const err = await c.start().catch((e) => e);
    expect(err).toBeInstanceOf(MapNotLoadedError);
    expect(err.message).toBe("no shard map loaded within 60 ms: control store down");
    expect(err.cause).toBe(source.failWith);
    expect(source.gets).toBeGreaterThan(1);
  });

  it("follows an announcement at once, without waiting for a poll", async () => {
    await write();
    const c = cache();
    const changes: Array<[number, number | undefined]> = [];
    c.onChange((map, previous) => changes.push([map.version, previous?.version]));
    expect(c.version).toBe(0); // nothing loaded yet
    await c.start();
    expect(c.version).toBe(1);
    await write({ defaultShard: "b" });
    await waitFor(() => c.status().version === 2, 1_000, "version 2 through the announcement");
    expect(c.version).toBe(2);
    expect(c.current().defaultShard).toBe("b");
    expect(changes).toEqual([
      [1, undefined],
      [2, 1],
    ]);
  });

  it("reads only for announced versions above the one held", async () => {
    await write();
    const c = cache();
    await c.start();
    await sleep(5); // the watch's first announcement (version 1) has come and gone
    const gets = source.gets;
    source.announce(1);
    source.announce(0);
    await sleep(5);
    expect(source.gets).toBe(gets);
    source.announce(7);
    await waitFor(() => source.gets === gets + 1, 1_000, "a read for version 7");
  });

  it("finds a change by polling when announcements are lost", async () => {
    source.dropAnnouncements = true;
    await write();
    const c = cache({ pollMs: 30 });
    await c.start();
    await write({ defaultShard: "c" });
    await sleep(10);
    expect(c.status().version).toBe(1); // no announcement arrived
    await waitFor(() => c.status().version === 2, 1_000, "version 2 through polling");
    expect(c.current().defaultShard).toBe("c");
  });

  it("runs one refresh at a time and coalesces triggers into one more", async () => {
    await write();
    const c = cache();
    await c.start();
    await c.refresh(); // the read the first announcement asked for has ended too
    const gets = source.gets;
    source.maxConcurrent = 0;
    const release = source.holdReads();
    const pending = Array.from({ length: 20 }, () => c.refresh());
    await sleep(5);
    release();
    const all = await Promise.all(pending);
    expect(source.maxConcurrent).toBe(1);
    expect(source.gets - gets).toBe(2);
    expect(new Set(all.map((m) => m?.version))).toEqual(new Set([1]));
  });

  it("does not miss a write that lands while a refresh is in flight", async () => {
    source.dropAnnouncements = true;
    await write();
    const c = cache();
    await c.start();
    await c.refresh();
    const gets = source.gets;
    const release = source.holdReads(); // this read sees version 1 and answers late
    const first = c.refresh();
    await sleep(5);
    await write({ defaultShard: "b" });
    const second = c.refresh();
    const third = c.refresh();
    release();
    expect((await first)?.version).toBe(1); // its read began before the write
    // theirs began after the read in flight had ended: one read, shared
    expect((await second)?.version).toBe(2);
    expect(await third).toBe(await second);
    expect(source.gets).toBe(gets + 2);
  });

  it("answers a refresh when its own read ends, not when reads asked for later do", async () => {
    await write();
    const c = cache({ refreshTimeoutMs: 60_000 });
    await c.start();
    await c.refresh();
    const release = source.holdReads();
    const mine = c.refresh(); // its read, held
    await sleep(5);
    void c.refresh(); // asked meanwhile: one more read, after it
    source.hang = true; // that one never answers (the control store gone silent)
    release();
    const late = sleep(1_000).then(() => "still waiting");
    expect(await Promise.race([mine.then((m) => m?.version), late])).toBe(1);
  });

  it("waits at most refreshWithin's time, answering the map held", async () => {
    await write();
    const c = cache();
    const loaded = await c.start();
    source.hang = true;
    const started = Date.now();
    expect(await c.refreshWithin(50)).toBe(loaded);
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it("keeps serving the last map while the source fails, and says so", async () => {
    await write();
    const errors: Error[] = [];
    const c = cache({ retryMs: 10, onError: (e) => errors.push(e) });
    const loaded = await c.start();
    source.failWith = new Error("connection refused");
    await c.refresh();
    expect(c.current()).toBe(loaded);
    const down = c.status();
    expect(down).toMatchObject({ stale: true, version: 1, lastError: source.failWith });
    expect(down.counters.errors).toBeGreaterThanOrEqual(1);
    expect(errors[0]).toBe(source.failWith);

    // Retries every retryMs on its own (pollMs is an hour): healing needs no trigger.
    source.failWith = undefined;
    await waitFor(() => !c.status().stale, 1_000, "recovery");
    expect(c.status().lastError).toBeUndefined();
    expect(c.status().loadedAtMs).toBeGreaterThanOrEqual(down.loadedAtMs);
  });

  it("counts a read that never answers as failed", async () => {
    await write();
    const c = cache({ refreshTimeoutMs: 30 });
    await c.start();
    source.hang = true;
    await c.refresh();
    expect(c.status()).toMatchObject({ stale: true, counters: { errors: 1 } });
    expect(c.status().lastError?.message).toBe("the source did not answer within 30 ms");
    source.hang = false;
    expect((await c.refresh())?.version).toBe(1);
    expect(c.status().stale).toBe(false);
  });

  it("reports a map not confirmed for staleAfterMs as stale, and still serves it", async () => {
    await write();
    let now = 1_000_000;
    const c = cache({ staleAfterMs: 5_000, now: () => now });
    await c.start();
    now += 5_001;
    expect(c.status()).toMatchObject({ stale: true, version: 1 });
    expect(c.status().lastError).toBeUndefined();
    expect(c.current().version).toBe(1);
    await c.refresh();
    expect(c.status().stale).toBe(false);
  });

  it("takes a lower version too (a control store restored from a backup)", async () => {
    await write();
    await write();
    await write();
    const c = cache();
    await c.start();
    source.serve = { ...(await memory.get())!, version: 2, defaultShard: "c" } as ShardMap;
    await c.refresh();
    expect(c.current()).toMatchObject({ version: 2, defaultShard: "c" });
  });

  it("takes another map under the version it holds (restored to an older one, then written again)", async () => {
    await write();
    await write();
    const c = cache();
    const held = await c.start();
    expect(held.version).toBe(2);
    // restored to version 1 while the cache could not reach the store, then written: 2 again
    source.serve = { ...held, defaultShard: "c", updatedAtMs: held.updatedAtMs + 60_000 };
    await c.refresh();
    expect(c.current()).toMatchObject({ version: 2, defaultShard: "c" });
  });

  it("survives a listener that throws", async () => {
    await write();
    const errors: Error[] = [];
    const c = cache({ onError: (e) => errors.push(e) });
    const seen: number[] = [];
    c.onChange(() => {
      throw new Error("listener bug");
    });
    c.onChange((map) => seen.push(map.version));
    await c.start();
    await write();
    await waitFor(() => c.status().version === 2, 1_000, "version 2");
    expect(seen).toEqual([1, 2]);
    expect(errors.map((e) => e.message)).toEqual(["listener bug", "listener bug"]);
  });

  it("keeps its refreshes whole when onError itself throws", async () => {
    await write();
    const c = cache({
      retryMs: 10,
      onError: () => {
        throw new Error("logger bug");
      },
    });
    const loaded = await c.start();
    source.failWith = new Error("connection refused");
    // resolves (a rejection here would be unhandled where the poll timer refreshes)
    await expect(c.refresh()).resolves.toBe(loaded);
    expect(c.status()).toMatchObject({ stale: true, lastError: source.failWith });
    source.failWith = undefined;
    await waitFor(() => !c.status().stale, 1_000, "recovery by the retry timer");
  });

  it("says whether announcements arrive, as its source does", async () => {
    await write();
    const c = cache();
    await c.start();
    expect(c.status().announcements).toBe(true);
    c.stop();
    expect(c.status().announcements).toBeUndefined();
  });

  it("stops following and polling when stopped", async () => {
    await write();
    const c = cache({ pollMs: 10 });
    const changed = jest.fn();
    c.onChange(changed);
    await c.start();
    c.stop();
    const gets = source.gets;
    await write();
    await sleep(40);
    expect(source.gets).toBe(gets);
    expect(c.current().version).toBe(1);
    expect(changed).toHaveBeenCalledTimes(1);
  });
});
