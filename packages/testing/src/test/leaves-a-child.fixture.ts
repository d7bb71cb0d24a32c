/**
 * Run by process-registry.int.test.ts in a jest of its own: starts a child, tracks
 * it as the test helpers do, writes its PID down and never stops it.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { trackChild } from "../process-registry";

it("starts a child and leaves it running", () => {
  const child = spawn("sleep", ["120"], { stdio: "ignore" });
  trackChild(child.pid!);
  fs.writeFileSync(process.env.CODEQ_LEFT_CHILD_PID_FILE!, String(child.pid));
});
