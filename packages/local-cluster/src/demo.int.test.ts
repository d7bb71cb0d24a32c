import { spawn, spawnSync } from "node:child_process";
import * as path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { isAlive } from "@codeq/testing";
import { REPO_ROOT } from "./service-process";

const DEMO = path.join(REPO_ROOT, "packages/local-cluster/dist/demo.js");

describe("the README's demo command", () => {
  it("brings the cluster up, moves tasks from producer to worker, and stops everything", () => {
    const run = spawnSync(process.execPath, [DEMO, "--once"], {
      encoding: "utf8",
      timeout: 90_000,
    });
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(
      /shard-a\s+\d+\s+127\.0\.0\.1:\d+\s+SERVING\s+codeq\.internal\.v1\.ShardService, codeq\.v1\.QueueService/,
    );
    expect(run.stdout).toMatch(
      /router-1\s+\d+\s+127\.0\.0\.1:\d+\s+SERVING\s+codeq\.v1\.AdminService/,
    );
    // traffic through the router reached every shard
    expect(run.stdout).toMatch(/acked by shard: a [1-9]\d*, b [1-9]\d*, c [1-9]\d*/);
    expect(run.stdout).toMatch(/^stopped\.$/m);
  }, 120_000);

  it("a terminal's Ctrl-C (to the whole process group) stops every process cleanly, in order", async () => {
    // the demo leads a process group of its own, as a shell's foreground job does
    const demo = spawn(process.execPath, [DEMO], { detached: true });
    let stdout = "";
    demo.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<number | null>((resolve) => demo.once("exit", resolve));
    let pids: number[] = [];
    try {
      while (!stdout.includes("Press Ctrl-C")) {
        if (demo.exitCode !== null) throw new Error(`the demo exited early:\n${stdout}`);
        await sleep(100);
      }
      pids = [...stdout.matchAll(/^\S.*?\s{2,}(\d+)\s{2,}127\.0\.0\.1:\d+/gm)].map((m) =>
        Number(m[1]),
      );
      expect(pids).toHaveLength(8); // the control store, 3 stores, 3 workers, the router
      process.kill(-demo.pid!, "SIGINT");
      expect(await exited).toBe(0);
      // each service shut down gracefully (exit 0), not at a second signal
      expect(stdout).toMatch(/^stopped\.$/m);
      expect(pids.filter(isAlive)).toEqual([]);
    } finally {
      // whatever a failure left running, by PID
      if (demo.exitCode === null) process.kill(demo.pid!, "SIGKILL");
      for (const pid of pids.filter(isAlive)) process.kill(pid, "SIGKILL");
    }
  }, 120_000);
});
