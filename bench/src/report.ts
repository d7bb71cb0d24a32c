import * as fs from "node:fs";
import * as path from "node:path";
import type { GcPauses } from "@codeq/common";
import { fmt } from "./measure";
import type { BenchOptions, RatioResult, ScenarioResult } from "./scenario";
import type { Environment } from "./environment";

/** What one scenario's run writes to `results/<scenario>-<time>.json`. */
export interface ResultFile extends ScenarioResult {
  readonly scenario: string;
  readonly startedAt: string;
  readonly options: BenchOptions;
  readonly environment: Environment;
}

const pct = (v: number) => `${(v * 100).toFixed(1)}%`;
const ms = (v: number) => v.toFixed(2);
const caveat = (text: string | undefined) => (text === undefined ? "" : `  [${text}]`);

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;

/**
 * "3 scavenges 4.1 ms, 1 full GC 12.0 ms" (what Node reports of them: a full GC's
 * marking steps are not in it), or "no GC".
 */
export function formatGcPauses(p: GcPauses): string {
  const parts: string[] = [];
  if (p.scavenges > 0)
    parts.push(`${plural(p.scavenges, "scavenge")} ${p.scavengeMs.toFixed(1)} ms`);
  if (p.fullGcs > 0) parts.push(`${plural(p.fullGcs, "full GC")} ${p.fullGcMs.toFixed(1)} ms`);
  else if (p.fullGcMs > 0) parts.push(`full GC marking started ${p.fullGcMs.toFixed(1)} ms`);
  if (p.weakCallbackMs > 0) parts.push(`weak callbacks ${p.weakCallbackMs.toFixed(1)} ms`);
  return parts.length ? parts.join(", ") : "no GC";
}

/** The scenario's variants as an aligned table, then its ratios, one per line. */
export function formatResult(scenario: string, result: ScenarioResult): string {
  // a column per other process measured by any variant (e.g. "shard CPU"), in first-seen order
  const processes = [...new Set(result.variants.flatMap((v) => Object.keys(v.processCpu ?? {})))];
  const rows = [
    ["variant", "rate", "unit/s", "units", "cycle p50 ms", "p99 ms", "node CPU", "redis CPU"],
  ];
  rows[0]!.push(...processes.map((p) => `${p} CPU`));
  for (const v of result.variants) {
    const cpu = (p: string) => v.processCpu?.[p];
    rows.push([
      `${scenario}: ${v.name}`,
      fmt(v.perSecond),
      `${v.unit}/s`,
      fmt(v.units),
      v.cycles === 0 ? "-" : ms(v.p50Ms),
      v.cycles === 0 ? "-" : ms(v.p99Ms),
      pct(v.clientCpu),
      v.serverCpu === undefined ? "-" : pct(v.serverCpu),
      ...processes.map((p) => (cpu(p) === undefined ? "-" : pct(cpu(p)!))),
    ]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const lines = rows.map((row) =>
    row
      .map((cell, c) => (c === 0 || c === 2 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)))
      .join("  "),
  );
  lines.splice(1, 0, widths.map((w) => "-".repeat(w)).join("  "));
  for (const v of result.variants) {
    const gc = Object.entries(v.gc ?? {});
    // the bench's own alone says little: no service of the variant was read
    if (gc.every(([name]) => name === "bench")) continue;
    const each = gc.map(([name, p]) => `${name} ${formatGcPauses(p)}`).join("; ");
    lines.push(`GC pauses in ${scenario}: ${v.name}: ${each}`);
  }
  lines.push(...formatRatios(result.ratios));
  for (const c of result.checks ?? []) {
    const value = `${c.value.toFixed(2)} ${c.unit}`;
    const verdict = `(target < ${c.max} ${c.unit}: ${c.met ? "met" : "MISSED"})`;
    lines.push(`${c.name} = ${value}  ${verdict}${caveat(c.caveat)}`);
  }
  for (const f of result.figures ?? []) {
    const detail = f.detail === undefined ? "" : `  (${f.detail})`;
    lines.push(`${f.name} = ${f.value.toFixed(2)} ${f.unit}${detail}`);
  }
  return lines.join("\n");
}

/** One line per ratio, with its target and whether it was met. */
export function formatRatios(ratios: readonly RatioResult[]): string[] {
  return ratios.map((r) => {
    const f = r.format === "times" ? (v: number) => `${v.toFixed(2)}×` : pct;
    const target =
      r.target === undefined ? "" : `  (target ≥ ${f(r.target)}: ${r.met ? "met" : "MISSED"})`;
    return `${r.name} = ${r.numerator} / ${r.denominator} = ${f(r.value)}${target}${caveat(r.caveat)}`;
  });
}

/** Writes one scenario's results as JSON under `dir`; returns the file's path. */
export function writeResult(dir: string, file: ResultFile): string {
  fs.mkdirSync(dir, { recursive: true });
  const stamp = file.startedAt.replace(/:/g, "-");
  const out = path.join(dir, `${file.scenario}-${stamp}.json`);
  fs.writeFileSync(out, `${JSON.stringify(file, null, 2)}\n`);
  return out;
}
