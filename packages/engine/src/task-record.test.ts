import * as fc from "fast-check";
import { decodeTask, encodeState, putDigits, sameState, type TaskRecord } from "./task-record";

const backoff = { kind: "exponential", baseMs: 1000, maxMs: 60_000, jitter: true } as const;

const leased: TaskRecord = {
  id: "01HZY3Q5V8W2N7K4M6P9R1T3XA",
  priority: 7,
  runAt: 1_733_000_000_123,
  maxAttempts: 25,
  attempts: 3,
  leaseSeq: 42,
  backoff,
  createdAt: 1_733_000_000_000,
  updatedAt: 1_733_000_000_456,
  state: "LEASED",
  leaseDeadline: 1_733_000_030_456,
  leaseMs: 30_000,
  lastError: "timeout — ändern", // UTF-8 after the ASCII fixed part
};

describe("state strings", () => {
  it("follow the layout of task-state.lua, column by column", () => {
    expect(encodeState(leased, 12_345_678_901_234)).toBe(
      "L7" +
        "0003" +
        "0025" +
        "0000000042" +
        "12345678901234" +
        "1733000000123" +
        "1733000030456" +
        "00030000" +
        "1733000000456" +
        "timeout — ändern",
    );
  });

  it("decode to the same task and nonce, from a string or from a script's bytes", () => {
    const text = encodeState(leased, 99);
    for (const state of [text, Buffer.from(text, "utf8")]) {
      const { task, nonce } = decodeTask(leased.id, "", state, backoff);
      expect(nonce).toBe(99);
      expect(task).toEqual({ ...leased, createdAt: task.createdAt });
    }
  });

  it("keep the done time of a dead task and drop the lease fields", () => {
    const dead: TaskRecord = { ...leased, state: "DEAD", doneAt: 1_733_000_099_000 };
    const { task } = decodeTask(dead.id, "", encodeState(dead), backoff);
    expect(task.state).toBe("DEAD");
    expect(task.doneAt).toBe(1_733_000_099_000);
    expect(task.leaseDeadline).toBeUndefined();
    expect(task.leaseMs).toBeUndefined();
  });

  it("are refused when the first letter or the length is wrong", () => {
    const text = encodeState(leased);
    expect(() => decodeTask(leased.id, "", "X" + text.slice(1), backoff)).toThrow(/malformed/);
    expect(() => decodeTask(leased.id, "", text.slice(0, 80), backoff)).toThrow(/malformed/);
  });
});

describe("sameState", () => {
  it("holds only for records whose state strings are the same", () => {
    // each field from a few values; the second record is the first with at most one
    // field set again (to the same value or another), so that pairs are often the same
    const domains = {
      state: fc.constantFrom("READY", "SCHEDULED", "LEASED", "DEAD"),
      priority: fc.constantFrom(0, 9),
      attempts: fc.constantFrom(0, 2),
      maxAttempts: fc.constantFrom(5, 25),
      leaseSeq: fc.constantFrom(0, 7),
      runAt: fc.constantFrom(1_733_000_000_000, 1_733_000_000_001),
      updatedAt: fc.constantFrom(1_733_000_000_000, 1_733_000_000_002),
      leaseDeadline: fc.constantFrom(undefined, 1_733_000_030_000),
      leaseMs: fc.constantFrom(undefined, 30_000),
      doneAt: fc.constantFrom(undefined, 1_733_000_099_000),
    };
    const record = fc.record(domains);
    const change = fc.oneof(
      fc.constant({}),
      ...Object.entries(domains).map(([field, values]) =>
        (values as fc.Arbitrary<unknown>).map((value) => ({ [field]: value })),
      ),
    );
    const task = (r: object): TaskRecord => ({
      ...leased,
      lastError: undefined,
      ...r,
    });
    let same = 0;
    fc.assert(
      fc.property(record, change, (a, c) => {
        const b = { ...a, ...c };
        if (!sameState(task(a), task(b))) return;
        same++;
        expect(encodeState(task(a))).toBe(encodeState(task(b)));
      }),
      { numRuns: 2000 },
    );
    expect(same).toBeGreaterThan(0);
    // any one field apart: not the same
    const base = task({ state: "READY" });
    for (const field of [
      "priority",
      "attempts",
      "maxAttempts",
      "leaseSeq",
      "runAt",
      "updatedAt",
    ] as const)
      expect([field, sameState(base, { ...base, [field]: base[field] + 1 })]).toEqual([
        field,
        false,
      ]);
  });
});

describe("putDigits", () => {
  it("writes zero-padded digits and says where it stopped", () => {
    const buf = Buffer.alloc(8, "-");
    expect(putDigits(buf, 1, 305, 5)).toBe(6);
    expect(buf.toString("latin1")).toBe("-00305--");
  });

  it.each([
    [100_000, 5],
    [-1, 5],
    [1.5, 5],
    [Number.NaN, 5],
  ])("refuses %p in %p digits, which would shift every later field", (n, width) => {
    expect(() => putDigits(Buffer.alloc(8), 0, n, width)).toThrow(
      expect.objectContaining({ kind: "INVALID_ARGUMENT" }),
    );
  });
});
