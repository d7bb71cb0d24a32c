import { configWarnings, loadShardConfig } from "./config";

describe("shard worker configuration", () => {
  const base = { CODEQ_SHARD_ID: "a", CODEQ_SHARD_REDIS_URL: "redis://127.0.0.1:6379" };

  it("takes at most as many items per request as one engine call stores or leases", () => {
    expect(loadShardConfig(base).maxBatch).toBe(1000);
    expect(loadShardConfig({ ...base, CODEQ_SHARD_MAX_BATCH: "50" }).maxBatch).toBe(50);
    expect(() => loadShardConfig({ ...base, CODEQ_SHARD_MAX_BATCH: "2000" })).toThrow(/maxBatch/);
  });

  it("warns of a payload cap above the answer bound, and of nothing by default", () => {
    expect(configWarnings(loadShardConfig(base))).toEqual([]);
    const big = loadShardConfig({
      ...base,
      CODEQ_SHARD_PAYLOAD_CAP_BYTES: String(8 * 1024 * 1024),
    });
    expect(configWarnings(big)).toEqual([
      expect.stringMatching(/payloadCapBytes .* maxResponseBytes/),
    ]);
  });
});
