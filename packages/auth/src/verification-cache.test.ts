import type { Identity } from "./identity";
import { fakeClock } from "./test/jwt";
import { VerificationCache } from "./verification-cache";

const who = (tenant: string): Identity => ({ tenant, principal: "p", roles: new Set(["worker"]) });

describe("VerificationCache", () => {
  it("keeps an entry until the earlier of the token's expiry and the ttl", () => {
    const clock = fakeClock();
    const cache = new VerificationCache({ ttlMs: 60_000, now: clock.now });
    cache.set("long-lived", who("a"), clock.now() + 3_600_000);
    cache.set("short-lived", who("b"), clock.now() + 5_000);
    expect(cache.get("long-lived")?.tenant).toBe("a");
    expect(cache.get("short-lived")?.tenant).toBe("b");
    clock.advance(5_000);
    expect(cache.get("short-lived")).toBeUndefined();
    expect(cache.get("long-lived")?.tenant).toBe("a");
    clock.advance(55_000);
    expect(cache.get("long-lived")).toBeUndefined();
    expect({ hits: cache.hits, misses: cache.misses }).toEqual({ hits: 3, misses: 2 });
  });

  it("does not store an already expired token", () => {
    const clock = fakeClock();
    const cache = new VerificationCache({ now: clock.now });
    cache.set("t", who("a"), clock.now() - 1);
    expect(cache.size).toBe(0);
  });

  it("drops the least recently used entry when full", () => {
    const cache = new VerificationCache({ maxEntries: 2 });
    cache.set("one", who("1"), undefined);
    cache.set("two", who("2"), undefined);
    cache.get("one"); // "two" is now the least recently used
    cache.set("three", who("3"), undefined);
    expect(cache.size).toBe(2);
    expect(cache.get("two")).toBeUndefined();
    expect(cache.get("one")?.tenant).toBe("1");
    expect(cache.get("three")?.tenant).toBe("3");
  });

  it("caches nothing with ttl 0", () => {
    const cache = new VerificationCache({ ttlMs: 0 });
    cache.set("t", who("a"), undefined);
    expect(cache.get("t")).toBeUndefined();
  });
});
