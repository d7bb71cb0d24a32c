import { spawn } from "node:child_process";
import { join } from "node:path";
import { freePort } from "@codeq/testing";

/**
 * A shard worker told to stop while it waits for its store (started from dist/, as in
 * production): it handles the signal itself. As a container's PID 1, node ignores a
 * SIGTERM it has no handler for, and the orchestrator would kill it only after its
 * grace period.
 */
test("a worker waiting for its store ends on SIGTERM by itself, at once", async () => {
  const child = spawn(process.execPath, [join(__dirname, "../dist/main.js")], {
    env: {
      ...process.env,
      CODEQ_SHARD_ID: "a",
      CODEQ_SHARD_LISTEN: `127.0.0.1:${await freePort()}`,
      CODEQ_SHARD_METRICS_LISTEN: "",
      // nothing listens there: the worker waits for its store
      CODEQ_SHARD_REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
      CODEQ_SHARD_STORE_START_TIMEOUT_MS: "60000",
      CODEQ_SHARD_DEV_IDENTITY: "true",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (b: Buffer) => (output += b.toString()));
  child.stderr.on("data", (b: Buffer) => (output += b.toString()));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  try {
    // it is waiting for the store once it says so
    for (let i = 0; i < 200 && !/store/i.test(output); i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(output).toMatch(/store/i);
    const sent = Date.now();
    child.kill("SIGTERM");
    // exited by its own hand (a code), not killed by the signal's default action
    expect(await exited).toEqual({ code: 143, signal: null });
    expect(Date.now() - sent).toBeLessThan(5_000);
    expect(output).toMatch(/SIGTERM while starting/);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
}, 30_000);
