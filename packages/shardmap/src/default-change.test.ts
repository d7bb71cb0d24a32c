import { finishDefaultChange } from "./default-change";
import type { ShardMap } from "./shard-map";

const map = (overrides: Partial<ShardMap> = {}): ShardMap => ({
  version: 7,
  updatedAtMs: 1,
  shards: {
    a: { endpoint: "127.0.0.1:1", state: "active" },
    b: { endpoint: "127.0.0.1:2", state: "active" },
  },
  defaultShard: "b",
  formerDefault: "a",
  commands: { PINNED: "a", MAPPED: "b" },
  tenants: {},
  migrations: [],
  ...overrides,
});

describe("finishDefaultChange", () => {
  it("moves each command the former default took that follows the new default, and clears formerDefault", () => {
    const moving = {
      id: "m0",
      command: "MOVING",
      from: "a",
      to: "b",
      state: "copying" as const,
      startedAtMs: 1,
    };
    const current = map({ migrations: [moving] });
    const done = finishDefaultChange(
      current,
      "a",
      ["MAPPED", "MOVING", "PINNED", "STRAY1", "STRAY2"],
      "shard@a",
    )!;
    expect(done.started.map((m) => [m.command, m.from, m.to, m.state, m.requestedBy])).toEqual([
      ["STRAY1", "a", "b", "copying", "shard@a"],
      ["STRAY2", "a", "b", "copying", "shard@a"],
    ]);
    expect(done.started.every((m) => m.mapVersion === 8 && m.hadOwnRoute === false)).toBe(true);
    expect(new Set(done.started.map((m) => m.id)).size).toBe(2);
    expect(done.draft.formerDefault).toBeUndefined();
    expect("formerDefault" in done.draft).toBe(false);
    expect(done.draft.migrations).toEqual([moving, ...done.started]);
    expect(done.draft.commands).toEqual(current.commands);
    expect(done.draft.defaultShard).toBe("b");
  });

  it("is nothing to write once the change is finished, or for another former default", () => {
    expect(finishDefaultChange(map({ formerDefault: undefined }), "a", ["X"], "x")).toBeUndefined();
    expect(finishDefaultChange(map(), "b", ["X"], "x")).toBeUndefined();
  });
});
