/**
 * A file of credentials or keys, read at construction and again when it changes: its
 * stat is checked at most every `checkIntervalMs` (or at once, when asked), and a
 * changed file is parsed again. A file that becomes unreadable or invalid keeps the
 * last good content, and is reported once (until it changes again).
 */
import * as fs from "node:fs";
import { AuthConfigError, messageOf, toError } from "./errors";

/** Settings of a file read again when it changes. */
export interface WatchedFileOptions {
  /** Least time between two checks of the file's stat during normal traffic (default 10 s). */
  readonly checkIntervalMs?: number;
  /** The clock, in ms since the epoch (tests pass a fake one). */
  readonly now?: () => number;
  /** Told when a changed file cannot be used (the last good content stays); default process.emitWarning. */
  readonly onReloadError?: (err: Error) => void;
}

export class WatchedFile<T> {
  private value: T;
  private stamp: string;
  /** The file's stat when it last could not be used: not read (nor reported) again until it changes. */
  private badStamp: string | undefined;
  private lastCheckMs: number;
  private inFlight: Promise<boolean> | undefined;
  private readonly checkIntervalMs: number;
  private readonly now: () => number;
  private readonly onReloadError: (err: Error) => void;
  /** Times a changed file was loaded. */
  reloads = 0;
  /** Times a changed file could not be used. */
  reloadErrors = 0;

  /**
   * Reads `file` now; throws AuthConfigError when it is missing or `parse` refuses it.
   * `what` names the file in messages ("JWKS file").
   */
  constructor(
    readonly file: string,
    private readonly what: string,
    private readonly parse: (text: string) => T,
    options: WatchedFileOptions = {},
    warning = "FileReloadError",
  ) {
    this.checkIntervalMs = options.checkIntervalMs ?? 10_000;
    this.now = options.now ?? Date.now;
    this.onReloadError =
      options.onReloadError ?? ((err) => process.emitWarning(err.message, warning));
    try {
      const stat = fs.statSync(file, { bigint: true });
      this.value = parse(fs.readFileSync(file, "utf8"));
      this.stamp = stampOf(stat);
    } catch (err) {
      if (err instanceof AuthConfigError) throw err;
      throw new AuthConfigError(`cannot use ${what} ${file}: ${messageOf(err)}`, { cause: err });
    }
    this.lastCheckMs = this.now();
  }

  /** The content last read that could be used. */
  get current(): T {
    return this.value;
  }

  /** The check interval is over: a check started now (`refresh`), or undefined when not due. */
  refreshIfDue(): Promise<boolean> | undefined {
    return this.now() - this.lastCheckMs >= this.checkIntervalMs ? this.refresh() : undefined;
  }

  /** Re-reads the file if its stat changed; true when new content was loaded. One check in flight. */
  refresh(): Promise<boolean> {
    this.inFlight ??= this.reloadIfChanged().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private async reloadIfChanged(): Promise<boolean> {
    this.lastCheckMs = this.now();
    let stamp: string | undefined;
    try {
      const stat = await fs.promises.stat(this.file, { bigint: true });
      stamp = stampOf(stat);
      if (stamp === this.stamp || stamp === this.badStamp) return false;
      this.value = this.parse(await fs.promises.readFile(this.file, "utf8"));
      this.stamp = stamp;
      this.badStamp = undefined; // a file that goes bad again is reported again
      this.reloads++;
      return true;
    } catch (err) {
      // the same unusable file (or the same missing one) is reported once
      const bad = stamp ?? `unreadable: ${messageOf(err)}`;
      if (bad === this.badStamp) return false;
      this.badStamp = bad;
      this.reloadErrors++;
      this.onReloadError(
        new Error(
          `${this.what} ${this.file} changed but cannot be used (keeping the last good one): ${messageOf(err)}`,
          { cause: toError(err) },
        ),
      );
      return false;
    }
  }
}

/** Identifies one version of the file: a rewrite in place or a rename over it both change it. */
function stampOf(stat: fs.BigIntStats): string {
  return `${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`;
}
