import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { REPO_ROOT } from "./service-process";

describe("the README's demo command", () => {
  it("brings the cluster up, moves tasks from producer to worker, and stops everything", () => {
    const run = spawnSync(
      process.execPath,
      [path.join(REPO_ROOT, "packages/local-cluster/dist/demo.js"), "--once"],
      {
        encoding: "utf8",
        timeout: 90_000,
      },
    );
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(
      /shard-a\s+\d+\s+127\.0\.0\.1:\d+\s+SERVING\s+codeq\.internal\.v1\.ShardService, codeq\.v1\.QueueService/,
    );
    expect(run.stdout).toMatch(
      /router-1\s+\d+\s+127\.0\.0\.1:\d+\s+SERVING\s+codeq\.v1\.AdminService/,
    );
    // traffic through the router reached every shard
    expect(run.stdout).toMatch(/acked by shard: a [1-9]\d*, b [1-9]\d*, c [1-9]\d*/);
    expect(run.stdout).toMatch(/stopped\./);
  }, 120_000);
});
