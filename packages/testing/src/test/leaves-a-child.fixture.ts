/**
 * Run by process-registry.int.test.ts in a jest of its own: starts a child, tracks it
 * as the test helpers do, writes its PID down and never stops it; and, as a step that
 * timed out would, starts one more after the file was torn down, writing down how
 * that one ended.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { TRACKING_CLOSED, trackChild } from "../process-registry";

const files = JSON.parse(process.env.CODEQ_LEFT_CHILD_FILES!) as {
  pid: string;
  late: string;
  dir: string;
};

it("starts a child and leaves it running, with a directory of its own", () => {
  const child = spawn("sleep", ["120"], { stdio: "ignore" });
  fs.mkdirSync(files.dir);
  fs.writeFileSync(`${files.dir}/data`, "x");
  trackChild(child.pid!, files.dir);
  fs.writeFileSync(files.pid, String(child.pid));
});

it("leaves a step running that starts a child after the file is done", () => {
  const started = Date.now();
  const startLate = () => {
    const closed = (globalThis as { [TRACKING_CLOSED]?: boolean })[TRACKING_CLOSED];
    if (!closed && Date.now() - started < 10_000) {
      setTimeout(startLate, 20);
      return;
    }
    const child = spawn("sleep", ["20"], { stdio: "ignore" });
    child.once("exit", (code, signal) =>
      fs.writeFileSync(files.late, `${closed ? "closed" : "open"} ${signal ?? code}`),
    );
    trackChild(child.pid!);
  };
  startLate();
});
