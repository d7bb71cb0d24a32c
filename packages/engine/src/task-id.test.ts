import { TASK_ID_PATTERN, TaskIdGenerator } from "./task-id";

describe("task ids", () => {
  it("are 26 Crockford base32 characters that sort by time, and in order within one millisecond", () => {
    const gen = new TaskIdGenerator();
    const ids = [gen.next(1000), gen.next(1000), gen.next(1000), gen.next(999), gen.next(2000)];
    for (const id of ids) expect(id).toMatch(TASK_ID_PATTERN);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    expect(new TaskIdGenerator().next(0).slice(0, 10)).toBe("0000000000");
  });
});
