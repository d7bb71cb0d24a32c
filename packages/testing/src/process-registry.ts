/**
 * PIDs of the servers this process spawned (redis-servers, service processes), so
 * none outlives its test run when a test crashes or times out without stopping it:
 *
 * - A plain process kills them by PID on its way out (`exit`).
 * - Inside jest that hook never runs: a test module's `process` is jest's copy,
 *   whose `exit` never fires. There the set lives on the test file's global, and
 *   the jest environment (jest.environment.js) kills what is left in it when the
 *   file is done, after every afterAll hook, and what is started after that.
 */
export const TRACKED_CHILDREN = Symbol.for("codeq.testing.trackedChildren");
/**
 * Set on the global by the jest environment once the file is torn down: a step that
 * timed out goes on running, and a child it starts after that is killed at once.
 */
export const TRACKING_CLOSED = Symbol.for("codeq.testing.trackingClosed");

type WithTracked = { [TRACKED_CHILDREN]?: Set<number>; [TRACKING_CLOSED]?: boolean };

function tracked(): Set<number> {
  const g = globalThis as WithTracked;
  return (g[TRACKED_CHILDREN] ??= new Set());
}

let hooked = false;

/** SIGKILLs every PID in `pids` that is still tracked there; returns how many it signalled. */
export function killTracked(pids: Set<number>): number {
  let signalled = 0;
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
      signalled++;
    } catch {
      // already gone
    }
  }
  pids.clear();
  return signalled;
}

export function trackChild(pid: number): void {
  tracked().add(pid);
  if ((globalThis as WithTracked)[TRACKING_CLOSED]) {
    killTracked(tracked());
    return;
  }
  if (!hooked) {
    hooked = true;
    process.once("exit", () => killTracked(tracked()));
  }
}

export function untrackChild(pid: number): void {
  tracked().delete(pid);
}
