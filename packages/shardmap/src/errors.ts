/**
 * The package's typed errors. A `ShardMapError` means a map (or a change to it) is
 * invalid and names every problem; a `VersionConflictError` means another writer
 * changed the map first (read it again and retry); a `MapNotLoadedError` means a
 * cache was asked for a map before it ever loaded one. Each carries `name` and
 * `cause`, so callers branch on the class and services map it to a gRPC status.
 */

/** A shard map, a change to one, or a static map file is invalid; `problems` lists every reason. */
export class ShardMapError extends Error {
  override readonly name = "ShardMapError";
  readonly problems: readonly string[];

  constructor(message: string, options: { problems?: readonly string[]; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.problems = options.problems ?? [];
  }
}

/** A compare-and-set found the map at another version than expected; nothing was written. */
export class VersionConflictError extends Error {
  override readonly name = "VersionConflictError";

  constructor(
    readonly expectedVersion: number,
    /** The stored version when the write was refused (0 = no map). */
    readonly currentVersion: number,
  ) {
    super(
      `shard map version conflict: expected version ${expectedVersion}, the map is at version ${currentVersion}; read it again and retry`,
    );
  }
}

/** The control store answered, and holds no shard map (none was written yet). */
export class NoShardMapError extends Error {
  override readonly name = "NoShardMapError";

  constructor() {
    super("the control store holds no shard map");
  }
}

/** The cache has never loaded a map (not started, or the control store never answered). */
export class MapNotLoadedError extends Error {
  override readonly name = "MapNotLoadedError";

  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { cause: options.cause });
  }
}

/** True when `err` is a refused compare-and-set (the caller should re-read and retry). */
export function isVersionConflict(err: unknown): err is VersionConflictError {
  return err instanceof VersionConflictError;
}

/**
 * `onError` made safe to call from anywhere (a refresh, a ping, a timer): a handler (a
 * logger) that throws is ignored, for it has nowhere left to report to.
 */
export function reporter(onError?: (err: Error) => void): (err: Error) => void {
  return (err) => {
    try {
      onError?.(err);
    } catch {
      // nowhere left to say it
    }
  };
}

export { formatProblems, messageOf, toError } from "@codeq/common";
