import { startLocalCluster } from "./local-cluster";
import { isAlive as alive } from "@codeq/testing";

describe("startLocalCluster", () => {
  it("brings up control store, shards and routers as healthy processes and stops each by PID", async () => {
    const cluster = await startLocalCluster({ shards: 2, routers: 1 });
    const pids = [
      cluster.control.pid,
      ...cluster.shards.flatMap((s) => [s.store.pid, s.worker.pid]),
      ...cluster.routers.map((r) => r.pid),
    ];
    try {
      expect(cluster.shards.map((s) => s.id)).toEqual(["a", "b"]);
      expect(pids.every(alive)).toBe(true);
      expect(new Set(cluster.shards.map((s) => s.store.port)).size).toBe(2);
    } finally {
      await cluster.stop();
    }
    expect(pids.some(alive)).toBe(false);
  }, 60_000);
});
