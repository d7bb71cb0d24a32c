import { TASK_FIELDS_MAX_BYTES } from "@codeq/wire";
import { configWarnings, identityOptions, loadShardConfig, moveBatchBytes } from "./config";

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

  it("refuses a request limit that cannot hold a task at the cap, or an ack's largest result", () => {
    expect(loadShardConfig(base).maxMessageBytes).toBe(16 * MIB);
    const most = 16 * MIB - TASK_FIELDS_MAX_BYTES;
    expect(cap(most).payloadCapBytes).toBe(most);
    expect(() => cap(most + 1)).toThrow(
      /CODEQ_SHARD_MAX_MESSAGE_BYTES \(maxMessageBytes\): maxMessageBytes \(16777216\) is too small for a task with a payload of payloadCapBytes \(\d+\) .* raise it to at least 16777217, or lower payloadCapBytes to at most \d+/,
    );
    // reachable once requests may be larger
    expect(cap(32 * MIB, 40 * MIB)).toMatchObject({
      payloadCapBytes: 32 * MIB,
      maxMessageBytes: 40 * MIB,
    });
    // the request limit lowered alone: an ack's result of 1 MiB must still arrive
    expect(() => cap(1024, MIB)).toThrow(
      /CODEQ_SHARD_MAX_MESSAGE_BYTES \(maxMessageBytes\): .* an ack with a result of 1048576 bytes .* raise it to at least 1343488$/,
    );
    expect(cap(1024, 1343488).maxMessageBytes).toBe(1343488);
  });

  it("moves tasks in requests the target takes: 4 MiB of them, less under a small request limit", () => {
    expect(moveBatchBytes(loadShardConfig(base))).toBe(4 * MIB);
    expect(moveBatchBytes(cap(15 * MIB))).toBe(4 * MIB);
    // half of what 1 MiB + 288 KiB + 64 KiB leaves beside 288 KiB
    expect(moveBatchBytes(cap(MIB, MIB + TASK_FIELDS_MAX_BYTES + 65536))).toBe(557_056);
  });

  it("takes a previous router secret beside the current one only, each at least 32 characters", () => {
    const next = "n".repeat(32);
    const previous = "p".repeat(32);
    const load = (env: Record<string, string>) => identityOptions(loadShardConfig(env));
    expect(
      load({ CODEQ_SHARD_ROUTER_SECRET: next, CODEQ_SHARD_ROUTER_SECRET_PREVIOUS: previous }),
    ).toMatchObject({ routerSecret: next, previousRouterSecret: previous });
    expect(() => load({ CODEQ_SHARD_ROUTER_SECRET_PREVIOUS: previous })).toThrow(
      /only beside the current one/,
    );
    expect(() =>
      load({ CODEQ_SHARD_ROUTER_SECRET: next, CODEQ_SHARD_ROUTER_SECRET_PREVIOUS: "short" }),
    ).toThrow(/previous router secret must be at least 32 characters/);
  });
});
