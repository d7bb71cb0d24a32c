import { parseQueueId, queueId, queueKeys, shardKeys } from "./keys";

describe("key layout", () => {
  const ref = { command: "SEND_EMAIL", tenant: "acme" };

  it("puts every key of a queue under one hash tag that names command, tenant and shard", () => {
    const k = queueKeys(ref, { shard: "b" });
    const all = [
      k.tasks,
      k.payloads,
      k.results,
      ...k.ready,
      k.scheduled,
      k.leased,
      k.dead,
      k.completed,
      k.moving,
      k.idemidx,
      k.idem("x"),
    ];
    for (const key of all) expect(key.startsWith("codeq:q:{SEND_EMAIL:acme:s:b}:")).toBe(true);
    expect(k.ready[9]).toBe("codeq:q:{SEND_EMAIL:acme:s:b}:ready:9");
    expect(k.ready).toHaveLength(10);
    expect(new Set(all).size).toBe(all.length);
    expect(k.idem("order:{1}")).toBe("codeq:q:{SEND_EMAIL:acme:s:b}:idem:order:{1}"); // the first {…} is the tag
  });

  it("keeps the legacy single-shard layout selectable", () => {
    const k = queueKeys(ref, { shard: "a", layout: "legacy" });
    expect(k.ready[3]).toBe("codeq:q:SEND_EMAIL:acme:ready:3");
    expect(k.leased).toBe("codeq:q:SEND_EMAIL:acme:leased");
    expect(shardKeys({ shard: "a", layout: "legacy" })).toEqual({
      due: "codeq:s:due",
      queues: "codeq:s:queues",
    });
  });

  it("separates shards, tenants and prefixes", () => {
    expect(queueKeys(ref, { shard: "a" }).tasks).not.toBe(queueKeys(ref, { shard: "b" }).tasks);
    expect(queueKeys(ref, { shard: "a" }).tasks).not.toBe(
      queueKeys({ ...ref, tenant: "other" }, { shard: "a" }).tasks,
    );
    expect(queueKeys(ref, { shard: "a", prefix: "t1" }).tasks).toBe(
      "t1:q:{SEND_EMAIL:acme:s:a}:tasks",
    );
    expect(shardKeys({ shard: "c" }).due).toBe("codeq:s:c:due");
  });

  it("round-trips queue ids", () => {
    expect(queueId(ref)).toBe("SEND_EMAIL:acme");
    expect(parseQueueId("SEND_EMAIL:acme")).toEqual(ref);
  });
});
