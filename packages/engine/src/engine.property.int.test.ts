/**
 * Model-based property test of one queue: random interleavings of enqueue, lease,
 * ack, nack, extend, release, reap, promote and clock steps run against the real
 * engine (Lua scripts on a real redis-server) and against a small in-memory model
 * of SPEC §2. After every step the whole queue is compared with the model: the
 * counts of every state and per priority, every task record, and the due index.
 *
 * Tasks are named T1, T2… in enqueue order and tokens T<n>#<fence>, so a shrunk
 * counterexample reads as a story; the error message carries the resolved trace.
 */
import fc from "fast-check";
import { engineFixture, type EngineFixture } from "./test/fixture";
import { Model } from "./test/engine-model";
import { commandArbs, leaseAndCompare, step } from "./test/model-commands";

// ---------------------------------------------------------------- the property

describe("queue engine against a model (fast-check)", () => {
  let fx: EngineFixture;
  beforeAll(async () => (fx = await engineFixture()));
  afterAll(() => fx.close());

  it("loses, duplicates or double-leases no task, keeps priority/FIFO order, attempts and DLQ moves", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.noBias(fc.commands(commandArbs, { maxCommands: 40, size: "max" })),
        async (cmds) => {
          // A fresh engine (own key prefix, own clock) per run; completed tasks outlive the
          // run. Its connection is closed by fx.close() (closing it twice leaks a timer).
          const { engine, clock } = await fx.engine({ completedRetentionMs: 24 * 3600_000 });
          const real = { engine, clock };
          const model = new Model(clock);
          await fc.asyncModelRun(() => ({ model, real }), cmds);
          // Drain whatever is ready or due: the full order must be the model's.
          await step(model, real, () => leaseAndCompare(model, real, 1000, 1000));
        },
      ),
      { numRuns: 100 },
    );
  }, 120_000);
});
