import { createLogger } from "@codeq/server-kit";
import { MapCache, MemoryMapSource, type ShardMapDraft } from "@codeq/shardmap";
import { DefaultChangeFinisher } from "./default-finish";
import { ShardFence } from "./fence";

const CHANGE = { actor: "test", action: "test", summary: "" };
/** b is the default since a change from a that is not finished; X is mapped to a. */
const draft: ShardMapDraft = {
  shards: {
    a: { endpoint: "127.0.0.1:1", state: "active" },
    b: { endpoint: "127.0.0.1:2", state: "active" },
  },
  defaultShard: "b",
  formerDefault: "a",
  commands: { X: "a" },
  tenants: {},
  migrations: [],
};

const waitFor = async (check: () => boolean, ms = 3_000) => {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe("DefaultChangeFinisher", () => {
  let source: MemoryMapSource;
  let cache: MapCache;
  let fence: ShardFence;
  let stop: (() => void) | undefined;
  let finisher: DefaultChangeFinisher | undefined;
  let asked = 0;
  let held: () => Promise<string[]>;
  beforeEach(async () => {
    source = new MemoryMapSource();
    await source.compareAndSet(0, draft, CHANGE);
    cache = new MapCache(source, { pollMs: 3_600_000 });
    await cache.start();
    fence = new ShardFence("a", cache);
    asked = 0;
    held = async () => ["STRAY", "X"];
  });
  afterEach(async () => {
    stop?.();
    await finisher?.stop();
    cache.stop();
  });

  const start = (afterMs: number) => {
    finisher = new DefaultChangeFinisher({
      shard: "a",
      cache,
      source,
      fence,
      commandsHeld: () => {
        asked++;
        return held();
      },
      logger: createLogger("test", "silent"),
      afterMs,
    });
    stop = finisher.start();
  };

  it("waits afterMs, then finishes the change: the strays move", async () => {
    const began = Date.now();
    start(300);
    await new Promise((r) => setTimeout(r, 100));
    expect(asked).toBe(0);
    await waitFor(() => cache.current().formerDefault === undefined);
    expect(Date.now() - began).toBeGreaterThanOrEqual(300);
    expect(asked).toBe(1);
    const map = cache.current();
    expect(map.migrations.map((m) => [m.command, m.from, m.to, m.requestedBy])).toEqual([
      ["STRAY", "a", "b", "shard@a"],
    ]);
    expect((await source.listAudit(1, 0))[0]).toMatchObject({
      actor: "shard@a",
      summary: "finished: a is no longer read for the default's queues",
    });
  });

  it("reads what the shard holds only once the stores admitted before have ended", async () => {
    const admitted = fence.counted();
    start(0);
    await new Promise((r) => setTimeout(r, 200));
    expect(asked).toBe(0);
    fence.ended(admitted);
    await waitFor(() => cache.current().formerDefault === undefined);
    expect(asked).toBe(1);
  });

  it("tries again after a failed try, twice as late each time", async () => {
    let fail = true;
    held = async () => {
      if (fail) throw new Error("the store is away");
      return [];
    };
    start(0);
    await waitFor(() => asked === 1);
    fail = false;
    const failedAt = Date.now();
    await waitFor(() => cache.current().formerDefault === undefined, 5_000);
    expect(asked).toBe(2);
    expect(Date.now() - failedAt).toBeGreaterThanOrEqual(1_900);
  });

  it("a worker stopped during a try writes nothing", async () => {
    let answer: (commands: string[]) => void = () => undefined;
    held = () => new Promise((resolve) => (answer = resolve));
    start(0);
    await waitFor(() => asked === 1);
    const stopped = finisher!.stop();
    answer(["STRAY"]);
    await stopped;
    expect((await source.get())!.formerDefault).toBe("a");
  });

  it("leaves alone a map whose former default is another shard", async () => {
    await source.compareAndSet(1, { ...draft, formerDefault: "b", defaultShard: "a" }, CHANGE);
    await cache.refresh();
    start(0);
    await new Promise((r) => setTimeout(r, 200));
    expect(asked).toBe(0);
    expect((await source.get())!.version).toBe(2);
  });
});
