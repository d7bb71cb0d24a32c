import { MOVE_BATCH_BYTES } from "@codeq/engine";
import { TASK_FIELDS_MAX_BYTES } from "@codeq/wire";
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

  it("refuses a payload cap that a request of maxMessageBytes cannot carry, moving included", () => {
    const MIB = 1024 * 1024;
    const cap = (bytes: number, max?: number) =>
      loadShardConfig({
        ...base,
        CODEQ_SHARD_PAYLOAD_CAP_BYTES: String(bytes),
        ...(max === undefined ? {} : { CODEQ_SHARD_MAX_MESSAGE_BYTES: String(max) }),
      });
    expect(loadShardConfig(base).maxMessageBytes).toBe(16 * MIB);
    // a task that large, its fields and a moving batch of 4 MiB must fit in 16 MiB
    const most = 16 * MIB - TASK_FIELDS_MAX_BYTES - MOVE_BATCH_BYTES;
    expect(cap(most).payloadCapBytes).toBe(most);
    expect(() => cap(most + 1)).toThrow(
      /CODEQ_SHARD_PAYLOAD_CAP_BYTES \(payloadCapBytes\): payloadCapBytes \(\d+\) does not fit maxMessageBytes \(16777216\): moving a task that large to another shard .* raise maxMessageBytes to at least 16777217, or lower payloadCapBytes to at most \d+/,
    );
    // reachable once requests may be larger
    expect(cap(32 * MIB, 40 * MIB)).toMatchObject({
      payloadCapBytes: 32 * MIB,
      maxMessageBytes: 40 * MIB,
    });
    expect(() => cap(MIB, 4 * MIB)).toThrow(/payloadCapBytes/);
  });
});
