import * as fs from "node:fs";

/**
 * PIDs of the servers this process spawned (redis-servers, service processes), each
 * with the data directory to remove after it (if any), so none outlives its test run
 * when a test crashes or times out without stopping it:
 *
 * - A plain process kills them by PID on its way out (`exit`).
 * - Inside jest that hook never runs: a test module's `process` is jest's copy,
 *   whose `exit` never fires. There the set lives on the test file's global, and
 *   the jest environment (jest.environment.js) kills what is left in it when the
 *   file is done, after every afterAll hook, and what is started after that.
 */
const TRACKED_CHILDREN = Symbol.for("codeq.testing.trackedChildren");
/**
 * Set on the global by the jest environment once the file is torn down: a step that
 * timed out goes on running, and a child it starts after that is killed at once.
 */
export const TRACKING_CLOSED = Symbol.for("codeq.testing.trackingClosed");

/** PID → the directory to remove once it is killed (undefined: none). */
type Tracked = Map<number, string | undefined>;
type WithTracked = { [TRACKED_CHILDREN]?: Tracked; [TRACKING_CLOSED]?: boolean };

function tracked(): Tracked {
  const g = globalThis as WithTracked;
  return (g[TRACKED_CHILDREN] ??= new Map());
}

let hooked = false;

/**
 * SIGKILLs every PID tracked in `children` and removes its directory.
 * (jest.environment.js does the same in plain JavaScript: it cannot import this.)
 */
function killTracked(children: Tracked): void {
  for (const [pid, dir] of children) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
  }
  children.clear();
}

/** Tracks a spawned server; `dir` is removed after it is killed (its data directory). */
export function trackChild(pid: number, dir?: string): void {
  tracked().set(pid, dir);
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
