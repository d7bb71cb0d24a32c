import { payloadText, queueLabel, shortEnum, shortList, taskCount, time } from "./format";

describe("format", () => {
  test("payloads: printable UTF-8 as text, anything else as b64:", () => {
    expect(payloadText(Buffer.from("héllo\tworld"))).toBe("héllo\tworld");
    expect(payloadText(Buffer.from("bin\u0001ary"))).toBe(
      `b64:${Buffer.from("bin\u0001ary").toString("base64")}`,
    );
    expect(payloadText(Uint8Array.from([0xff, 0xfe]))).toBe("b64://4=");
    expect(payloadText(new Uint8Array())).toBe("");
  });

  test("long payloads are cut with an ellipsis", () => {
    expect(payloadText(Buffer.from("abcdefghij"), 5)).toBe("abcd…");
    expect(payloadText(Buffer.from("abcde"), 5)).toBe("abcde");
  });

  test("a payload that is a view into a larger buffer is read from its own bytes", () => {
    const big = Buffer.from("xxhelloxx");
    expect(payloadText(big.subarray(2, 7))).toBe("hello");
  });

  test("names, times, lists and counts", () => {
    expect(shortEnum("MIGRATION_STATE_COMPLETED", "MIGRATION_STATE_")).toBe("COMPLETED");
    expect(time(0)).toBe("-");
    expect(time(Date.UTC(2025, 0, 2, 3, 4, 5))).toBe("2025-01-02 03:04:05Z");
    expect(queueLabel("X", "")).toBe("X");
    expect(queueLabel("X", "acme")).toBe("X/acme");
    expect(shortList(["a", "b"])).toBe("a, b");
    expect(shortList(["a", "b", "c", "d"], 2)).toBe("a, b … (+2)");
    expect(taskCount({ ready: 1, scheduled: 2, dead: 3, leased: 4, idempotencyKeys: 100 })).toBe(
      10,
    );
    expect(taskCount(undefined)).toBe(0);
  });
});
