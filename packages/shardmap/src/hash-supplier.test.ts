import { ShardMapError } from "./errors";
import { HashSupplier } from "./hash-supplier";

const QUEUES = Array.from({ length: 10_000 }, (_, i) => ({
  command: `CMD_${i % 37}`,
  tenant: `tenant-${i}`,
}));
const shardIds = (n: number) => Array.from({ length: n }, (_, i) => `shard-${i}`);

/** Fraction of the queues each shard owns. */
function shares(supplier: HashSupplier): Map<string, number> {
  const counts = new Map<string, number>();
  for (const q of QUEUES) {
    const shard = supplier.currentShard(q.command, q.tenant);
    counts.set(shard, (counts.get(shard) ?? 0) + 1);
  }
  return new Map([...counts].map(([id, n]) => [id, n / QUEUES.length]));
}

describe("HashSupplier", () => {
  it.each([3, 4, 5, 6, 7, 8])(
    "moves about 1/(N+1) of 10,000 queues, all to the new shard, when one joins N=%i",
    (n) => {
      const before = new HashSupplier(shardIds(n));
      const after = new HashSupplier(shardIds(n + 1));
      const added = `shard-${n}`;
      let moved = 0;
      for (const q of QUEUES) {
        const from = before.currentShard(q.command, q.tenant);
        const to = after.currentShard(q.command, q.tenant);
        if (from === to) continue;
        moved++;
        expect(to).toBe(added);
      }
      const fraction = moved / QUEUES.length;
      const ideal = 1 / (n + 1);
      expect(fraction).toBeGreaterThanOrEqual(0.6 * ideal);
      expect(fraction).toBeLessThanOrEqual(1.5 * ideal);
      // CODEQ_PRINT_HASH_MOVEMENT=1 prints the measurement (for docs).
      if (process.env.CODEQ_PRINT_HASH_MOVEMENT) {
        process.stdout.write(
          `N=${n}: moved ${moved} of ${QUEUES.length} (${(fraction * 100).toFixed(2)}%), ideal ${(ideal * 100).toFixed(2)}%\n`,
        );
      }
    },
  );

  it("spreads queues evenly enough: every shard of 5 owns 0.6..1.5 × 1/5", () => {
    const owned = shares(new HashSupplier(shardIds(5)));
    expect([...owned.keys()].sort()).toEqual(shardIds(5));
    for (const share of owned.values()) {
      expect(share).toBeGreaterThanOrEqual(0.6 / 5);
      expect(share).toBeLessThanOrEqual(1.5 / 5);
    }
  });

  it("is deterministic: independent rings agree, whatever the order shards are listed in", () => {
    const a = new HashSupplier(["a", "b", "c", "d"]);
    const b = new HashSupplier(["d", "c", "b", "a"]);
    for (const q of QUEUES.slice(0, 2_000)) {
      expect(b.currentShard(q.command, q.tenant)).toBe(a.currentShard(q.command, q.tenant));
    }
    // Pinned answers: a change of hash or ring layout would move every deployment's queues.
    expect(a.currentShard("SEND_EMAIL", "acme")).toBe("c");
    expect(a.currentShard("RESIZE_IMAGE", "globex")).toBe("d");
  });

  it("keeps one shard per queue: queueShards is [currentShard]", () => {
    const supplier = new HashSupplier(shardIds(3));
    expect(supplier.queueShards("SEND_EMAIL", "acme")).toEqual([
      supplier.currentShard("SEND_EMAIL", "acme"),
    ]);
    expect(new HashSupplier(["only"]).currentShard("X", "y")).toBe("only");
  });

  it("refuses an empty, duplicated or badly named shard list", () => {
    expect(() => new HashSupplier([])).toThrow(ShardMapError);
    expect(() => new HashSupplier(["a", "Bad_Id", "a"])).toThrow(
      /invalid hash supplier:\n {2}- shard id "Bad_Id" must match .*\n {2}- shard "a" is listed twice/,
    );
    expect(() => new HashSupplier(["a"], { vnodes: 0 })).toThrow(/vnodes must be an integer/);
  });
});
