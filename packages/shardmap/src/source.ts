/**
 * A map source: where the shard map lives and how it changes. Every write is a
 * compare-and-set on the version, validated before anything is written, recorded
 * in the audit log and then announced to watchers. Implementations: the control
 * store (`RedisMapSource`, also KVRocks) and an in-memory one for tests and
 * single-process use (`MemoryMapSource`); both pass the same contract suite.
 */
import { formatProblems, ShardMapError } from "./errors";
import type { ShardMap, ShardMapDraft } from "./shard-map";
import { assertShardMap } from "./validate";

/** Who changed the map and why; stored in the audit entry of the write. */
export interface ChangeInfo {
  /** The identity that made the change (a caller's identity, or "mover"). */
  readonly actor: string;
  /** The RPC or internal step, e.g. "AssignCommand", "MigrationCompleted". */
  readonly action: string;
  /** A human-readable summary of what changed. */
  readonly summary: string;
}

/** One successful write, as the audit log records it. */
export interface AuditEntry extends ChangeInfo {
  readonly atMs: number;
  readonly versionBefore: number;
  readonly versionAfter: number;
}

export interface MapSource {
  /** The stored map, or undefined when none was ever written. Throws ShardMapError for an invalid stored map. */
  get(): Promise<ShardMap | undefined>;

  /**
   * Writes `next` as version `expectedVersion + 1` if the stored version is still
   * `expectedVersion` (0 = no map yet), appends an audit entry, then announces the
   * new version. Throws ShardMapError (nothing written) for an invalid map and
   * VersionConflictError (with the current version) when another write came first.
   * `version` and `updatedAtMs` of `next`, if present, are replaced. `previous`, the
   * map read at `expectedVersion` (when it is that version), lets off the shards
   * that already shared an endpoint there (ValidateOptions.previous).
   */
  compareAndSet(
    expectedVersion: number,
    next: ShardMapDraft,
    change: ChangeInfo,
    previous?: ShardMap,
  ): Promise<ShardMap>;

  /**
   * Calls `onAnnounce(version)` for every announced version, and with the stored
   * version (0 = none) as soon as the subscription is live and again after every
   * re-subscription, so a watcher catches up with anything it missed. Announcements
   * can still be lost (a dropped connection); readers poll as well. Returns unwatch.
   */
  watch(onAnnounce: (version: number) => void): () => void;

  /**
   * Whether announcements reach this process now (a source that has them: its
   * subscription is live and answers). While false, changes still arrive by polling.
   */
  announcing?(): boolean;

  /** Audit entries, newest first. */
  listAudit(limit?: number, offset?: number): Promise<AuditEntry[]>;

  /** Releases connections and watchers. */
  close(): Promise<void>;
}

/** Checks listAudit's paging arguments (shared by the sources). */
export function checkPage(limit: number, offset: number): void {
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000)
    throw new RangeError(`limit must be an integer 1..10000, got ${limit}`);
  if (!Number.isInteger(offset) || offset < 0)
    throw new RangeError(`offset must be a non-negative integer, got ${offset}`);
}

/**
 * The map and audit entry a compare-and-set writes, validated (every source runs
 * this before touching its store, so an invalid change writes nothing). `previous`
 * counts only when it is the version the write replaces (the compare-and-set then
 * proves it was the stored map).
 */
export function prepareWrite(
  expectedVersion: number,
  draft: ShardMapDraft,
  change: ChangeInfo,
  nowMs: number,
  previous?: ShardMap,
): { map: ShardMap; audit: AuditEntry } {
  const problems: string[] = [];
  if (!Number.isSafeInteger(expectedVersion) || expectedVersion < 0)
    problems.push(`expectedVersion must be a non-negative integer, got ${expectedVersion}`);
  for (const field of ["actor", "action"] as const) {
    if (typeof change?.[field] !== "string" || change[field] === "")
      problems.push(`change.${field} is required`);
  }
  if (typeof change?.summary !== "string") problems.push("change.summary must be a string");
  if (problems.length > 0)
    throw new ShardMapError(formatProblems("invalid shard map change:", problems), { problems });
  const {
    version: _v,
    updatedAtMs: _u,
    ...rest
  } = draft as ShardMapDraft & {
    version?: number;
    updatedAtMs?: number;
  };
  const version = expectedVersion + 1;
  const map = assertShardMap(
    { version, updatedAtMs: nowMs, ...rest },
    `shard map version ${version}`,
    { write: true, previous: previous?.version === expectedVersion ? previous : undefined },
  );
  const audit: AuditEntry = {
    atMs: nowMs,
    actor: change.actor,
    action: change.action,
    versionBefore: expectedVersion,
    versionAfter: version,
    summary: change.summary,
  };
  return { map, audit };
}
