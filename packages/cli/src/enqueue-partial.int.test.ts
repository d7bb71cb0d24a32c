import { startLocalCluster, type LocalCluster } from "@codeq/local-cluster";
import { requireBuilt, runCodeq } from "./test/run-codeq";

// A router whose tenants may enqueue 1,000 tasks, then 20 a second: `enqueue --count`
// sends 1,000 a call, so its second call is refused (the bucket would take 50 s to
// fill again, however slow the machine)
let cluster: LocalCluster;

beforeAll(async () => {
  requireBuilt();
  cluster = await startLocalCluster({
    shards: 1,
    routers: 1,
    env: { CODEQ_ROUTER_TENANT_ENQUEUE_RATE: "20", CODEQ_ROUTER_RATE_BURST_SECONDS: "50" },
  });
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
}, 120_000);

test("enqueue --count that fails part way prints the ids it stored and says how many", async () => {
  const r = await runCodeq(cluster.routers[0]!.address, [
    "enqueue",
    "cli.partial",
    "--count",
    "5000",
  ]);
  const ids = r.stdout.trim().split("\n");
  expect(ids.length).toBeGreaterThanOrEqual(1000);
  expect(ids.length).toBeLessThan(5000);
  expect(new Set(ids).size).toBe(ids.length);
  expect(r.stderr).toContain(`(after ${ids.length} of 5000 enqueued: their ids are printed)`);
  expect(r.code).not.toBe(0);
}, 60_000);
