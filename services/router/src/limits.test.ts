import { Limits, TokenBucket } from "./limits";

describe("TokenBucket", () => {
  test("gives a burst, then the rate, and says how long to wait", () => {
    let now = 0;
    const b = new TokenBucket(10, 20, () => now);
    expect(b.take(20)).toEqual({ ok: true });
    expect(b.take(1)).toEqual({ ok: false, retryAfterMs: 100 });
    now = 500; // 5 tokens back
    expect(b.take(6)).toEqual({ ok: false, retryAfterMs: 100 });
    expect(b.take(5)).toEqual({ ok: true });
    now = 10_000;
    expect(b.takeUpTo(50)).toBe(20); // never more than the burst
    b.refund(3);
    expect(b.waitFor(3)).toBe(0);
    expect(b.waitFor(4)).toBe(100);
  });

  test("a request larger than the burst waits for a full bucket, not forever", () => {
    let now = 0;
    const b = new TokenBucket(10, 20, () => now);
    b.take(20);
    expect(b.take(50)).toEqual({ ok: false, retryAfterMs: 2000 });
    now = 1_999;
    expect(b.take(50).ok).toBe(false);
    now = 2_000; // full: it goes through, and the bucket owes the 30 tokens beyond it
    expect(b.take(50)).toEqual({ ok: true });
    expect(b.take(1)).toEqual({ ok: false, retryAfterMs: 3100 });
    // credits paced by the same bucket wait for the debt too, and do not wipe it out
    expect(b.takeUpTo(10)).toBe(0);
    expect(b.take(1)).toEqual({ ok: false, retryAfterMs: 3100 });
    now = 5_100;
    expect(b.take(1)).toEqual({ ok: true });
  });

  test("a charge of what was delivered without a hold may leave the bucket owing", () => {
    let now = 0;
    const b = new TokenBucket(10, 20, () => now);
    b.take(15);
    b.charge(8); // 5 there: owes 3
    expect(b.take(1)).toEqual({ ok: false, retryAfterMs: 400 });
    now = 400;
    expect(b.take(1)).toEqual({ ok: true });
  });
});

describe("Limits", () => {
  test("refuses a tenant past its rate with RESOURCE_EXHAUSTED; other tenants are separate", () => {
    let now = 0;
    const limits = new Limits(
      { tenantEnqueueRate: 5, tenantLeaseRate: 0, burstSeconds: 1, maxStreamsPerPrincipal: 2 },
      () => now,
    );
    limits.enqueue(undefined, "t1", 5);
    expect(() => limits.enqueue(undefined, "t1", 1)).toThrow(
      /rate limit \(5 tasks\/s\).*retry in 200 ms/,
    );
    limits.enqueue(undefined, "t2", 5);
    now = 1_000;
    limits.enqueue(undefined, "t1", 5);
    expect(limits.leaseBucket("t1")).toBeUndefined(); // 0: no limit
  });

  test("drops the buckets of tenants that have not called for a while, not those still paying off", () => {
    let now = 0;
    const limits = new Limits(
      { tenantEnqueueRate: 10, tenantLeaseRate: 0, burstSeconds: 1, maxStreamsPerPrincipal: 2 },
      () => now,
    );
    limits.enqueue(undefined, "busy", 10); // its bucket is empty
    for (let i = 0; i < 5_000; i++) limits.enqueue(undefined, `once-${i}`, 1);
    // new tenants' buckets sweep out those full again now and then; none is full yet
    expect(limits.bucketsKept).toBe(5_001);
    now = 500; // every bucket has refilled but busy's (5 of its 10 tokens back)
    for (let i = 0; i < 3_000; i++) limits.enqueue(undefined, `later-${i}`, 1);
    // the 5,000 once-callers are gone; busy and the later ones (not full yet) are kept
    expect(limits.bucketsKept).toBe(3_001);
    expect(() => limits.enqueue(undefined, "busy", 10)).toThrow(/rate limit/); // still owed
  });

  test("counts streams per principal of a tenant and frees a slot on release (once)", () => {
    const limits = new Limits({
      tenantEnqueueRate: 0,
      tenantLeaseRate: 0,
      burstSeconds: 1,
      maxStreamsPerPrincipal: 2,
    });
    const a = limits.openStream("A", "p");
    limits.openStream("A", "p");
    expect(() => limits.openStream("A", "p")).toThrow(/at most 2 LeaseStreams/);
    limits.openStream("A", "q");
    // another tenant's principal of the same name has streams of its own
    limits.openStream("B", "p");
    limits.openStream("B", "p");
    a();
    a();
    limits.openStream("A", "p");
    expect(() => limits.openStream("A", "p")).toThrow();
  });
});
