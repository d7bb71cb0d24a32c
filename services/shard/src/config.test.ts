import { MOVE_BATCH_BYTES } from "@codeq/engine";
import { TASK_FIELDS_MAX_BYTES } from "@codeq/wire";
import { configWarnings, loadShardConfig, moveBatchBytes } from "./config";

describe("shard worker configuration", () => {
  const base = { CODEQ_SHARD_ID: "a", CODEQ_SHARD_REDIS_URL: "redis://127.0.0.1:6379" };
  const MIB = 1024 * 1024;
  const cap = (bytes: number, max?: number) =>
    loadShardConfig({
      ...base,
      CODEQ_SHARD_PAYLOAD_CAP_BYTES: String(bytes),
      ...(max === undefined ? {} : { CODEQ_SHARD_MAX_MESSAGE_BYTES: String(max) }),
    });

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

  it("refuses a payload cap that a request of maxMessageBytes cannot carry", () => {
    expect(loadShardConfig(base).maxMessageBytes).toBe(16 * MIB);
    const most = 16 * MIB - TASK_FIELDS_MAX_BYTES;
    expect(cap(most).payloadCapBytes).toBe(most);
    expect(() => cap(most + 1)).toThrow(
      /CODEQ_SHARD_PAYLOAD_CAP_BYTES \(payloadCapBytes\): payloadCapBytes \(\d+\) does not fit maxMessageBytes \(16777216\): an enqueue, or a move to another shard, of a task that large needs requests of up to 16777217 bytes; raise maxMessageBytes to at least 16777217, or lower payloadCapBytes to at most \d+/,
    );
    // reachable once requests may be larger
    expect(cap(32 * MIB, 40 * MIB)).toMatchObject({
      payloadCapBytes: 32 * MIB,
      maxMessageBytes: 40 * MIB,
    });
    expect(() => cap(MIB, MIB)).toThrow(/payloadCapBytes/);
  });

  it("moves tasks in requests the target takes: 4 MiB past the first, less when that leaves no room", () => {
    expect(moveBatchBytes(loadShardConfig(base))).toBe(MOVE_BATCH_BYTES);
    expect(moveBatchBytes(cap(6 * MIB))).toBe(MOVE_BATCH_BYTES);
    // 16 MiB less a 12 MiB task and its fields leaves 3.7 MiB: half of it
    expect(moveBatchBytes(cap(12 * MIB))).toBe(Math.floor((4 * MIB - TASK_FIELDS_MAX_BYTES) / 2));
    // nothing beside a task at the cap: one task per request
    expect(moveBatchBytes(cap(16 * MIB - TASK_FIELDS_MAX_BYTES))).toBe(1);
  });
});
