import { Status } from "nice-grpc";
import { routerCluster } from "./test/cluster";
import { fuzzCluster, testAfterwards } from "./test/fuzz-fixture";
import { attacker, fresh, PROBES, SHARD_SECRET, type Caller } from "./test/fuzz-settings";

/**
 * Bad input never hurts (Issue 7, item 5), the circuit breaker: a tenant's hostile calls
 * are its own failures, not a shard's, so they must not cut the other tenants off. The
 * victim's cluster beside it (test/fuzz-fixture.ts) shares its Redis server and must come
 * out of it untouched.
 */

const fx = fuzzCluster();

describe("The circuit breaker under hostile input", () => {
  test("hostile leases do not open a shard's circuit breaker for the other tenants", async () => {
    // a cluster of its own: the breaker counts over a window shared by every caller, which
    // here holds only the attacker's calls (a failure would also spill into other tests)
    const own = await routerCluster({
      server: fx.server,
      shards: ["a"],
      shard: { devIdentity: false, routerSecret: SHARD_SECRET },
      router: fx.routerOptions,
    });
    try {
      const as = (who: Caller) =>
        own.clientWith({ authorization: who.metadata.get("authorization")! });
      const hostile = as(attacker);
      for (let i = 0; i < 10; i++)
        await fx.answer("Lease", (signal) =>
          hostile.lease({ commands: ["AQ"], waitMs: 2 ** 31 }, { signal }),
        );
      const out = await fx.answer("Enqueue", (signal) =>
        as(fresh).enqueue({ command: PROBES.a[0]! }, { signal }),
      );
      expect(out.ok ? "OK" : `${Status[out.code]}: ${out.message}`).toBe("OK");
    } finally {
      await own.close();
    }
  });
});

testAfterwards(fx);
