import { parseArgs } from "node:util";
import type { BenchOptions } from "./scenario";

export const USAGE = `usage: npm run bench -- [scenario ...] [options]
  (no scenario: run them all)
  --seconds <n>   measured seconds per variant (default 5)
  --warmup <n>    warm-up seconds per variant (default 1)
  --out <dir>     where the JSON results go (default bench/results)
  --list          list the scenarios and exit
  --help          this text`;

export interface BenchArgs extends BenchOptions {
  /** The scenarios to run, in the order given; every known one when none is named. */
  readonly scenarios: readonly string[];
  readonly outDir: string | undefined;
  readonly list: boolean;
  readonly help: boolean;
}

/** A bad command line; the message says what to fix. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

function seconds(flag: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value < min || value > 3600)
    throw new UsageError(`--${flag} must be a number of seconds from ${min} to 3600, got ${text}`);
  return value;
}

/** Parses `argv` (without node and the script) against the names of the known scenarios. */
export function parseBenchArgs(argv: readonly string[], known: readonly string[]): BenchArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        seconds: { type: "string" },
        warmup: { type: "string" },
        out: { type: "string" },
        list: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const { values, positionals } = parsed;
  const unknown = positionals.filter((name) => !known.includes(name));
  if (unknown.length > 0)
    throw new UsageError(`unknown scenario ${unknown.join(", ")}; known: ${known.join(", ")}`);
  return {
    scenarios: positionals.length > 0 ? [...new Set(positionals)] : [...known],
    seconds: seconds("seconds", values.seconds, 5, 0.1),
    warmupSeconds: seconds("warmup", values.warmup, 1, 0),
    outDir: values.out,
    list: values.list,
    help: values.help,
  };
}
