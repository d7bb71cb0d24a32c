import fc from "fast-check";
import { Status } from "nice-grpc";
import { fuzz, fuzzCluster, testAfterwards } from "./test/fuzz-fixture";
import { QUEUE_RPCS, queueRpcs } from "./test/fuzz-queue-rpcs";
import { attacker, BUDGET, fresh, opts, PROBES } from "./test/fuzz-settings";

/**
 * Bad input never hurts (Issue 7, item 5), QueueService: every RPC of the router is fed
 * hostile input by another tenant. Each call answers within its deadline, clearly, with
 * the caller's own data only; the victim's tasks and keys stay exactly as they were.
 * The setup and the checks after every test are in test/fuzz-fixture.ts.
 */

const fx = fuzzCluster();

describe("QueueService with hostile input from another tenant", () => {
  test.each(QUEUE_RPCS)(
    "%s answers clearly, with the caller's own data only",
    async (name) => {
      await fuzz(fx, name, queueRpcs(fx)[name]!);
    },
    60_000,
  );

  test("a run of hostile calls leaves every shard serving the other tenants", async () => {
    const rpcs = queueRpcs(fx);
    const call = fc.oneof(
      ...QUEUE_RPCS.map((name) => fc.tuple(fc.constant(name), rpcs[name]!.request)),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(call, { minLength: 5, maxLength: 20 }), async (run) => {
        // the answers are the other tests' business; here only what others see afterwards
        // (a hang: the RPC's own test reports it)
        for (const [name, req] of run)
          await fx
            .answer(name, (signal) => rpcs[name]!.call(req, opts(attacker, signal)))
            .catch(() => undefined);
        for (const command of [PROBES.a[0]!, PROBES.b[0]!]) {
          const out = await fx.answer(command, (signal) =>
            fx.q.enqueue({ command }, opts(fresh, signal)),
          );
          expect(out.ok ? "OK" : `${Status[out.code]}: ${out.message}`).toBe("OK");
        }
      }),
      { numRuns: 10, ...BUDGET },
    );
  }, 60_000);
});

testAfterwards(fx);
