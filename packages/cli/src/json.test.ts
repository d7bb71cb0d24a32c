import { MigrationState, TaskState } from "@codeq/proto";
import { migrationJson, toJson, toJsonLine } from "./json";

describe("toJson", () => {
  test("bytes become base64, bigints numbers when safe and strings otherwise", () => {
    const text = toJson({
      payload: Buffer.from("hi"),
      raw: Uint8Array.from([1, 2]),
      small: 5n,
      huge: 2n ** 64n,
      n: 1,
      nested: [{ state: TaskState.TASK_STATE_READY }],
    });
    expect(JSON.parse(text)).toEqual({
      payload: "aGk=",
      raw: "AQI=",
      small: 5,
      huge: "18446744073709551616",
      n: 1,
      nested: [{ state: 1 }],
    });
  });

  test("one line for streams", () => {
    expect(toJsonLine({ a: [1, 2], b: Buffer.from("x") })).toBe('{"a":[1,2],"b":"eA=="}');
  });

  test("enums are written by name, defaults kept", () => {
    const m = migrationJson({
      id: "m1",
      command: "X",
      tenant: "",
      fromShard: "a",
      toShard: "b",
      state: MigrationState.MIGRATION_STATE_COMPLETED,
      moved: undefined,
      remaining: undefined,
      startedAtMs: 1,
      updatedAtMs: 2,
      finishedAtMs: 3,
      ratePerSecond: 0,
      mapVersion: 4,
      requestedBy: "dev:default",
      lastError: "",
      lostShard: "",
    });
    expect(m).toMatchObject({ state: "MIGRATION_STATE_COMPLETED", tenant: "", ratePerSecond: 0 });
  });
});
