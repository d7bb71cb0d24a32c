/**
 * Node's test environment, and after each test file (once its afterAll hooks ran)
 * a SIGKILL for every server the file started and did not stop: a test that timed
 * out or threw before its teardown leaves no redis-server or service process behind,
 * not even one a timed-out step starts later.
 * The file's servers are tracked on its global (packages/testing/src/process-registry.ts).
 */
const fs = require("node:fs");
const { TestEnvironment } = require("jest-environment-node");

const TRACKED_CHILDREN = Symbol.for("codeq.testing.trackedChildren");
const TRACKING_CLOSED = Symbol.for("codeq.testing.trackingClosed");

class CodeqTestEnvironment extends TestEnvironment {
  async teardown() {
    // a step that timed out may still start servers: trackChild kills those at once
    this.global[TRACKING_CLOSED] = true;
    // the file's own Map (PID → data directory), from its realm: not an instance of
    // this realm's Map
    const children = this.global[TRACKED_CHILDREN];
    if (children && typeof children.clear === "function") {
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
    await super.teardown();
  }
}

module.exports = CodeqTestEnvironment;
