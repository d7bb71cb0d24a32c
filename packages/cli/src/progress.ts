import type { Output } from "./command";

/** What a progress display shows of one migration. */
export interface ProgressView {
  readonly id: string;
  /** Tasks moved so far. */
  readonly moved: number;
  /** Tasks the source still holds. */
  readonly remaining: number;
  /** Tasks per second over the last interval. */
  readonly rate: number;
  /** COPYING, DRAINING, COMPLETED … */
  readonly state: string;
  /** The mover's last error, if any. */
  readonly lastError?: string;
}

const FINISHED = new Set(["COMPLETED", "ABORTED"]);

/** Share done, 0..1: moved / (moved + remaining); 1 once finished with nothing counted. */
export function fraction(v: ProgressView): number {
  const total = v.moved + v.remaining;
  if (total === 0) return FINISHED.has(v.state) ? 1 : 0;
  return Math.min(1, v.moved / total);
}

const stats = (v: ProgressView) =>
  `${v.moved}/${v.moved + v.remaining} tasks  ${v.rate.toFixed(1)}/s  ${v.state}` +
  (v.lastError ? `  (retrying: ${v.lastError})` : "");

/** A one-line bar for a terminal: "[######------]  50%  5/10 tasks  2.0/s  COPYING". */
export function progressBar(v: ProgressView, width = 30): string {
  const f = fraction(v);
  const filled = Math.round(f * width);
  const bar = "█".repeat(filled) + "░".repeat(width - filled);
  return `${v.id} [${bar}] ${String(Math.floor(f * 100)).padStart(3)}%  ${stats(v)}`;
}

/** A plain progress line for logs and pipes. */
export function progressLine(v: ProgressView): string {
  return `${v.id}: ${Math.floor(fraction(v) * 100)}%  ${stats(v)}`;
}

/**
 * Shows migration progress on stderr: a bar redrawn in place on a terminal, a
 * line per change otherwise (so a log is not flooded by identical lines).
 */
export class ProgressReporter {
  private last = "";
  private drawn = false;

  constructor(private readonly io: Output) {}

  update(v: ProgressView): void {
    if (this.io.errIsTTY) {
      this.io.errRaw(`\r\x1b[2K${progressBar(v)}`);
      this.drawn = true;
      return;
    }
    const line = progressLine(v);
    // the rate changes on every poll; a new line only when something else did
    const key = `${v.moved}/${v.remaining}/${v.state}/${v.lastError ?? ""}`;
    if (key === this.last) return;
    this.last = key;
    this.io.err(line);
  }

  /** Ends the bar's line so later output starts on its own line. */
  finish(): void {
    if (this.drawn) this.io.errRaw("\n");
    this.drawn = false;
  }
}
