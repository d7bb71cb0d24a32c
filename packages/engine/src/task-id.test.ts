import { idTime, TASK_ID_PATTERN, TaskIdGenerator } from "./task-id";

describe("task ids", () => {
  it("are 26 Crockford base32 characters that sort by time, and in order within one millisecond", () => {
    const gen = new TaskIdGenerator();
    const ids = [gen.next(1000), gen.next(1000), gen.next(1000), gen.next(999), gen.next(2000)];
    for (const id of ids) expect(id).toMatch(TASK_ID_PATTERN);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    expect(new TaskIdGenerator().next(0).slice(0, 10)).toBe("0000000000");
  });

  it("carry the millisecond they were made in, including the last one seen when the clock steps back", () => {
    const gen = new TaskIdGenerator();
    const t = 1_733_000_000_123;
    const [a, b, c] = [gen.next(t), gen.next(t - 5), gen.next(t + 1)];
    expect([idTime(a), idTime(b), idTime(c)]).toEqual([t, t, t + 1]);
    expect(a < b && b < c).toBe(true);
    expect(a.slice(10)).not.toBe(c.slice(10)); // a new millisecond draws new random bits
  });
});
