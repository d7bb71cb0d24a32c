import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { isAlive } from "./process-alive";

const ROOT = path.resolve(__dirname, "../../..");

describe("servers a test file left running", () => {
  it("are killed by the jest environment when the file is done, or as they start after it", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "codeq-left-child-"));
    const files = {
      pid: path.join(dir, "pid"),
      late: path.join(dir, "late"),
      dir: path.join(dir, "data"),
    };
    let pid: number | undefined;
    try {
      // a jest of its own on the fixture; it ends when no child of the file is left
      await new Promise<void>((resolve, reject) =>
        execFile(
          process.execPath,
          [
            path.join(ROOT, "node_modules/jest/bin/jest.js"),
            "--config",
            path.join(ROOT, "jest.config.js"),
            "--testMatch",
            "**/src/test/leaves-a-child.fixture.ts",
            "--ci",
          ],
          {
            cwd: ROOT,
            env: { ...process.env, CODEQ_LEFT_CHILD_FILES: JSON.stringify(files) },
            timeout: 50_000,
          },
          (err, stdout, stderr) =>
            err ? reject(new Error(`${err.message}\n${stdout}\n${stderr}`)) : resolve(),
        ),
      );
      pid = Number(fs.readFileSync(files.pid, "utf8"));
      expect(pid).toBeGreaterThan(0);
      // killed before the jest run ended; allow for the signal's delivery
      const deadline = Date.now() + 2_000;
      while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(isAlive(pid)).toBe(false);
      expect(fs.existsSync(files.dir)).toBe(false); // its directory removed with it
      // started after the teardown: killed at once, not left to its 20 s
      expect(fs.readFileSync(files.late, "utf8")).toBe("closed SIGKILL");
    } finally {
      if (pid !== undefined && isAlive(pid)) process.kill(pid, "SIGKILL");
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
