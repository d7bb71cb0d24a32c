import { Writable } from "node:stream";
import pino from "pino";
import { FailureLog } from "./failure-log";

/** A real pino logger writing its lines into `lines`, parsed. */
function collecting(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level: "info" }, sink), lines };
}

const settle = () => new Promise((r) => setImmediate(r));

describe("FailureLog", () => {
  it("logs an operation's first failure at once, then at most once per period with the failures between", async () => {
    const { logger, lines } = collecting();
    let now = 0;
    const log = new FailureLog(logger, 10_000, () => now);
    log.failed("lease", new Error("Connection is closed."));
    log.failed("lease", new Error("Connection is closed."));
    log.failed("give_back", new Error("WRONGTYPE Operation against a key"));
    now = 9_999;
    log.failed("lease", new Error("Connection is closed."));
    now = 10_000;
    log.failed("lease", new Error("ERR script error"));
    await settle();
    expect(lines.map((l) => [l.operation, l.error, l.unlogged, l.msg, l.level])).toEqual([
      ["lease", "Connection is closed.", 0, "store operation failed", 40],
      ["give_back", "WRONGTYPE Operation against a key", 0, "store operation failed", 40],
      ["lease", "ERR script error", 2, "store operation failed", 40],
    ]);
    // after a quiet spell, the next failure is logged at once, with none unlogged
    now = 60_000;
    log.failed("lease", new Error("again"));
    await settle();
    expect(lines.at(-1)).toMatchObject({ operation: "lease", error: "again", unlogged: 0 });
  });
});
