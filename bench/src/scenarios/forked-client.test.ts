import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ForkedClient } from "./forked-client";

// The child runs the built module (scripts/test.sh builds before jest), as the bench does.
const BUILT = path.resolve(__dirname, "../../dist/scenarios/forked-client.js");
let dir: string;
let started: ForkedClient<unknown>[] = [];

beforeAll(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "codeq-forked-"))));
afterEach(async () => {
  await Promise.all(started.map((c) => c.close()));
  started = [];
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Forks a child whose body is `body` (JavaScript source of an async function). */
function fork<R>(name: string, body: string, config: unknown = {}): ForkedClient<R> {
  const file = path.join(dir, `${name}.js`);
  const source = `require(${JSON.stringify(BUILT)}).runForkedClient(${body});\n`;
  fs.writeFileSync(file, source);
  const client = ForkedClient.start<unknown, R>(file, config);
  started.push(client);
  return client;
}

async function until(what: string, ok: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 5_000; !ok(); await sleep(5))
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
}

const throws = (f: () => void) => {
  try {
    f();
    return false;
  } catch {
    return true;
  }
};

describe("ForkedClient", () => {
  it("reports the child's counts, tells it the window, and returns its result", async () => {
    const client = fork<{ config: unknown; inWindow: number }>(
      "counts",
      `async (config, io) => {
        let ticks = 0, inWindow = 0;
        io.counts = () => [ticks, inWindow];
        while (!io.stopping) { ticks++; if (io.open) inWindow++; await io.tick(); }
        return { config, inWindow };
      }`,
      { rate: 7 },
    );
    await until("a first report", () => client.count(0) > 0);
    expect(client.count(1)).toBe(0);
    client.window(true);
    await until("ticks in the window", () => client.count(1) > 2);
    client.window(false);
    const result = await client.stop();
    expect(result.config).toEqual({ rate: 7 });
    expect(result.inWindow).toBeGreaterThan(2);
    expect(client.count(1)).toBe(result.inWindow);
    expect(client.count(0)).toBeGreaterThan(result.inWindow);
  });

  it("reports the child's own GC pauses while the window was open", async () => {
    const client = fork(
      "gc",
      `async (config, io) => {
        require("node:v8").setFlagsFromString("--expose-gc");
        const gc = require("node:vm").runInNewContext("gc");
        let phase = 0;
        io.counts = () => [phase];
        for (let i = 0; i < 20; i++) gc({ type: "minor", execution: "sync" });
        await io.tick(); // Node hands the GC entries over on a later turn
        phase = 1;
        while (!io.open) await io.tick();
        for (let i = 0; i < 3; i++) gc({ type: "minor", execution: "sync" });
        gc();
        await io.tick();
        phase = 2;
        while (!io.stopping) await io.tick();
        return 0;
      }`,
    );
    await until("the scavenges before the window", () => client.count(0) === 1);
    client.window(true);
    await until("the GCs in the window", () => client.count(0) === 2);
    client.window(false);
    expect(client.gcInWindow).toBeUndefined(); // known once stopped
    await client.stop();
    const gc = client.gcInWindow!;
    expect(gc.scavenges).toBeGreaterThanOrEqual(3);
    expect(gc.scavenges).toBeLessThan(20);
    expect(gc.fullGcs).toBeGreaterThanOrEqual(1);
    expect(gc.fullGcMs).toBeGreaterThan(0);
  });

  it("passes on the child's failure, and stop() throws it", async () => {
    const client = fork(
      "fails",
      `async (config, io) => { await io.tick(); throw new Error("boom in the child"); }`,
    );
    await until("the failure", () => throws(() => client.check()));
    expect(() => client.check()).toThrow(/boom in the child/);
    await expect(client.stop()).rejects.toThrow(/boom in the child/);
  });

  it("reports a child that exits on its own as failed, and does not throw when told the window after", async () => {
    const client = fork("exits", `async () => process.exit(3)`);
    await until("the early exit", () => throws(() => client.check()));
    expect(() => client.check()).toThrow(/exited early \(code 3/);
    expect(() => client.window(true)).not.toThrow();
    await expect(client.stop()).rejects.toThrow(/exited early/);
  });
});
