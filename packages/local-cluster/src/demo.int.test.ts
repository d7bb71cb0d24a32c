import { spawn, spawnSync } from "node:child_process";
import * as path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { isAlive, trackChild, untrackChild } from "@codeq/testing";
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
    // a test that fails or times out leaves none of it running: the jest environment
    // kills it by PID (its own exit hook then kills what it started)
    trackChild(demo.pid!);
    let stdout = "";
    demo.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<number | null>((resolve) => demo.once("exit", resolve));
    let pids: number[] = [];
    try {
      const deadline = Date.now() + 60_000;
      while (!stdout.includes("Press Ctrl-C")) {
        if (demo.exitCode !== null) throw new Error(`the demo exited early:\n${stdout}`);
        if (Date.now() > deadline) throw new Error(`the demo did not come up:\n${stdout}`);
        await sleep(100);
      }
      pids = [...stdout.matchAll(/^\S.*?\s{2,}(\d+)\s{2,}127\.0\.0\.1:\d+/gm)].map((m) =>
        Number(m[1]),
      );
      expect(pids).toHaveLength(8); // the control store, 3 stores, 3 workers, the router
      for (const pid of pids) trackChild(pid); // a SIGKILLed demo would leave them
      process.kill(-demo.pid!, "SIGINT");
      expect(await exited).toBe(0);
      // each service shut down gracefully (exit 0), not at a second signal
      expect(stdout).toMatch(/^stopped\.$/m);
      expect(pids.filter(isAlive)).toEqual([]);
    } finally {
      // whatever a failure left running, by PID: a SIGTERM to the demo stops what it
      // started (a second one at once); what it listed and still runs, SIGKILL
      if (demo.exitCode === null) {
        process.kill(demo.pid!, "SIGTERM");
        await Promise.race([exited, sleep(20_000)]);
      }
      for (const pid of pids.filter(isAlive)) process.kill(pid, "SIGKILL");
      for (const pid of [demo.pid!, ...pids]) untrackChild(pid);
    }
  }, 120_000);
});
