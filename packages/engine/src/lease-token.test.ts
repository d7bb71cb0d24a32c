import {
  decodeLeaseToken,
  encodeLeaseToken,
  leaseTokenQueue,
  leaseTokenShard,
  leaseTokenShardBytes,
} from "./lease-token";

describe("lease tokens", () => {
  const fields = {
    shard: "b",
    command: "SEND_EMAIL",
    tenant: "acme",
    taskId: "01JB0000000000000000000000",
    fence: 3,
    nonce: 2 ** 46 - 1,
  };

  it("round-trips and names the shard first", () => {
    const token = encodeLeaseToken(fields);
    expect(decodeLeaseToken(token)).toEqual(fields);
    expect(leaseTokenShard(token)).toBe("b");
    expect(token.length).toBeLessThanOrEqual(512);
  });

  it("refuses truncated and malformed tokens", () => {
    const token = encodeLeaseToken(fields);
    const bad = [
      token.slice(0, token.lastIndexOf("~")),
      token + "~x",
      "",
      "c1~b",
      token.replace(/^c1/, "c2"),
      encodeLeaseToken({ ...fields, tenant: "a:b" }),
      encodeLeaseToken({ ...fields, shard: "B" }),
      encodeLeaseToken({ ...fields, taskId: "short" }),
      encodeLeaseToken({ ...fields, fence: 0 }),
      encodeLeaseToken({ ...fields, nonce: 2 ** 46 }),
      token.replace(/~[0-9a-z]+$/, "~ZZ"),
      "x".repeat(600),
    ];
    for (const t of bad) expect(decodeLeaseToken(t)).toBeUndefined();
    expect(leaseTokenShard("garbage")).toBeUndefined();
  });

  it("names the same shard from the token's bytes as from the token", () => {
    const bytes = (t: string) => Buffer.from(t, "utf8");
    const shardOf = (t: string) => {
      const b = leaseTokenShardBytes(bytes(t));
      return b === undefined ? undefined : Buffer.from(b).toString("utf8");
    };
    const token = encodeLeaseToken(fields);
    const tokens = [token, "c1~\ufeffb~X", "c1~ü~X", "c1~b", "c2~b~X", "garbage", "c1", ""];
    for (const t of tokens) expect([t, shardOf(t)]).toEqual([t, leaseTokenShard(t)]);
    // an empty shard names no shard of any map: undefined here, "" there
    expect(shardOf("c1~~X")).toBeUndefined();
    expect(leaseTokenShard("c1~~X")).toBe("");
  });

  it("reads the command and tenant of every well-formed token as the full decode does", () => {
    const names = ["a", "SEND_EMAIL", "x.y-z_9", "Q".repeat(128)];
    for (const command of names)
      for (const tenant of names) {
        const token = encodeLeaseToken({ ...fields, command, tenant });
        const full = decodeLeaseToken(token)!;
        expect(leaseTokenQueue(token)).toEqual({ command: full.command, tenant: full.tenant });
      }
    for (const t of ["", "c1", "c1~b", "c1~b~CMD", "c2~b~CMD~acme~rest", "garbage"])
      expect(leaseTokenQueue(t)).toBeUndefined();
  });
});
