/**
 * PIDs of the servers this process spawned. If the test process exits without
 * stopping them (a crash, a timeout), they are killed by PID on the way out, so no
 * redis-server outlives its test run.
 */
const live = new Set<number>();
let hooked = false;

export function trackChild(pid: number): void {
  live.add(pid);
  if (!hooked) {
    hooked = true;
    process.once("exit", () => {
      for (const p of live) {
        try {
          process.kill(p, "SIGKILL");
        } catch {
          // already gone
        }
      }
    });
  }
}

export function untrackChild(pid: number): void {
  live.delete(pid);
}
