import { routerCluster, within, type RouterCluster } from "./test/cluster";

/**
 * A router secret rotation half done: shard a already holds the new secret (and the
 * old one as previous), shard b and the router only the old one. Calls reach both
 * shards, and a move between them goes through: a presents the previous secret to b.
 */

const OLD = "the-old-router-secret-0123456789abcdef";
const NEW = "the-new-router-secret-0123456789abcdef";

let rc: RouterCluster;
afterEach(async () => {
  await rc.close();
});

test("mid-rotation, routers reach every shard and a move between a rolled and an unrolled shard completes", async () => {
  rc = await routerCluster({
    commands: { X: "a" },
    shard: { devIdentity: false },
    perShard: {
      a: { routerSecret: NEW, routerSecretPrevious: OLD },
      b: { routerSecret: OLD },
    },
    router: { shardSecret: OLD },
  });
  const c = rc.client("t1");
  await c.enqueueBatch({
    tasks: Array.from({ length: 3 }, (_, i) => ({ command: "X", idempotencyKey: `k${i}` })),
  });
  const { migrations } = await rc.admin().assignCommand({ command: "X", shard: "b" });
  expect(migrations).toHaveLength(1);
  await within(10_000, async () => (await rc.source.get())!.migrations.length === 0);
  expect(await rc.workers.get("b")!.engine.stats({ command: "X", tenant: "t1" })).toMatchObject({
    ready: 3,
  });
  // and keys moved with them: a retry on b is the original task
  const again = await c.enqueue({ command: "X", idempotencyKey: "k0" });
  expect(again.duplicate).toBe(true);
}, 30_000);
