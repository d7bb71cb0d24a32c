/**
 * Node's test environment, and after each test file (once its afterAll hooks ran)
 * a SIGKILL for every server the file started and did not stop: a test that timed
 * out or threw before its teardown leaves no redis-server or service process behind,
 * not even one a timed-out step starts later.
 * The file's servers are tracked on its global (packages/testing/src/process-registry.ts).
 */
const { TestEnvironment } = require("jest-environment-node");

const TRACKED_CHILDREN = Symbol.for("codeq.testing.trackedChildren");
const TRACKING_CLOSED = Symbol.for("codeq.testing.trackingClosed");

class CodeqTestEnvironment extends TestEnvironment {
  async teardown() {
    // a step that timed out may still start servers: trackChild kills those at once
    this.global[TRACKING_CLOSED] = true;
    // the file's own Set, from its realm: not an instance of this realm's Set
    const pids = this.global[TRACKED_CHILDREN];
    if (pids && typeof pids.clear === "function") {
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
      pids.clear();
    }
    await super.teardown();
  }
}

module.exports = CodeqTestEnvironment;
