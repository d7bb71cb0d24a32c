import { LeaseTokenCodec, leaseTokenShard } from "./lease-token";

describe("lease tokens", () => {
  const codec = new LeaseTokenCodec(Buffer.alloc(32, 1));
  const fields = {
    shard: "b",
    command: "SEND_EMAIL",
    tenant: "acme",
    taskId: "01JB0000000000000000000000",
    fence: 3,
  };

  it("round-trips and names the shard first", () => {
    const token = codec.encode(fields);
    expect(codec.decode(token)).toEqual(fields);
    expect(leaseTokenShard(token)).toBe("b");
    expect(token.length).toBeLessThanOrEqual(512);
  });

  it("refuses tampered, truncated, foreign and malformed tokens", () => {
    const token = codec.encode(fields);
    const other = new LeaseTokenCodec(Buffer.alloc(32, 2));
    const bad = [
      token.replace("~3~", "~4~"),
      token.replace("acme", "evil"),
      token.slice(0, -1),
      token + "x",
      other.encode(fields),
      "",
      "c1~b",
      token.replace(/^c1/, "c2"),
      codec.encode({ ...fields, tenant: "a:b" }),
      codec.encode({ ...fields, fence: 0 }),
      "x".repeat(600),
    ];
    for (const t of bad) expect(codec.decode(t)).toBeUndefined();
    expect(leaseTokenShard("garbage")).toBeUndefined();
  });

  it("needs a real secret", () => {
    expect(() => new LeaseTokenCodec(Buffer.alloc(8))).toThrow(/16 bytes/);
  });
});
