import { MapNotLoadedError } from "./errors";
import { MapCache } from "./map-cache";
import { MapSupplier } from "./map-supplier";
import { MemoryMapSource } from "./memory-map-source";
import { change, draft, waitFor } from "./test/fixtures";

describe("MapSupplier", () => {
  it("resolves through the cache's map and follows a reassignment", async () => {
    const source = new MemoryMapSource();
    const cache = new MapCache(source, { pollMs: 3_600_000 });
    const supplier = new MapSupplier(cache);
    expect(() => supplier.currentShard("SEND_EMAIL", "globex")).toThrow(MapNotLoadedError);
    try {
      await source.compareAndSet(0, draft(), change());
      await cache.start();
      expect(supplier.currentShard("SEND_EMAIL", "globex")).toBe("b");
      expect(supplier.currentShard("SEND_EMAIL", "acme")).toBe("c");
      expect(supplier.queueShards("RESIZE", "acme")).toEqual(["a"]);

      // An operator moves SEND_EMAIL from b to a: enqueues go to a, workers drain b first.
      await source.compareAndSet(
        1,
        draft({
          commands: { SEND_EMAIL: "a" },
          migrations: [
            {
              id: "m1",
              command: "SEND_EMAIL",
              from: "b",
              to: "a",
              state: "copying",
              startedAtMs: 1,
            },
          ],
        }),
        change("move SEND_EMAIL to a", "alice", "AssignCommand"),
      );
      await waitFor(() => cache.status().version === 2, 1_000, "version 2");
      expect(supplier.currentShard("SEND_EMAIL", "globex")).toBe("a");
      expect(supplier.queueShards("SEND_EMAIL", "globex")).toEqual(["b", "a"]);
      expect(supplier.queueShards("SEND_EMAIL", "acme")).toEqual(["c"]);
      expect(cache.status().counters.hits).toBe(6);
    } finally {
      cache.stop();
    }
  });
});
