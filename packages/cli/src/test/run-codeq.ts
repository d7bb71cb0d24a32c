import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

/** The real binary, as built by `npm run build` (scripts/test.sh builds first). */
export const BIN = path.join(__dirname, "..", "..", "dist", "main.js");

/** Fails at once, saying why, when the binary has not been built. */
export function requireBuilt(): void {
  if (!fs.existsSync(BIN)) throw new Error(`${BIN} is missing: run \`npm run build\` first`);
}

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** The environment without the caller's CODEQ_* settings (a token, TLS, a tenant). */
export const baseEnv = (): Record<string, string | undefined> =>
  Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CODEQ_")));

/** Runs `codeq ARGS` against `router` as a separate process, with `env` on top. */
export function runCodeq(
  router: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<Result> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { ...baseEnv(), CODEQ_ROUTER: router, ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}
