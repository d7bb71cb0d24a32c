/**
 * An in-memory map source (Vitess memorytopo style): the same contract as the
 * control store, kept in this process. The map is held as its JSON text, so every
 * reader gets its own copy exactly as it would from the store, and announcements
 * reach this source's watchers asynchronously, as pub/sub messages would.
 */
import { VersionConflictError } from "./errors";
import { DEFAULT_AUDIT_CAP, type ShardMap, type ShardMapDraft } from "./shard-map";
import {
  checkPage,
  prepareWrite,
  type AuditEntry,
  type ChangeInfo,
  type MapSource,
} from "./source";

export interface MemoryMapSourceOptions {
  /** How many audit entries to keep. Default 10000. */
  auditCap?: number;
  /** The clock stamping updatedAtMs and audit entries. Default Date.now. */
  now?: () => number;
}

export class MemoryMapSource implements MapSource {
  private stored: string | undefined;
  private version = 0;
  private audit: AuditEntry[] = [];
  private readonly watchers = new Set<(version: number) => void>();
  private readonly auditCap: number;
  private readonly now: () => number;

  constructor(options: MemoryMapSourceOptions = {}) {
    this.auditCap = options.auditCap ?? DEFAULT_AUDIT_CAP;
    this.now = options.now ?? Date.now;
  }

  async get(): Promise<ShardMap | undefined> {
    return this.stored === undefined ? undefined : (JSON.parse(this.stored) as ShardMap);
  }

  async compareAndSet(
    expectedVersion: number,
    next: ShardMapDraft,
    change: ChangeInfo,
    previous?: ShardMap,
  ): Promise<ShardMap> {
    const { map, audit } = prepareWrite(expectedVersion, next, change, this.now(), previous);
    if (this.version !== expectedVersion) {
      throw new VersionConflictError(expectedVersion, this.version);
    }
    this.stored = JSON.stringify(map);
    this.version = map.version;
    this.audit.unshift(audit);
    if (this.audit.length > this.auditCap) this.audit.length = this.auditCap;
    for (const watcher of this.watchers) this.announce(watcher, map.version);
    return JSON.parse(this.stored) as ShardMap;
  }

  watch(onAnnounce: (version: number) => void): () => void {
    const watcher = (version: number) => onAnnounce(version);
    this.watchers.add(watcher);
    this.announce(watcher, this.version);
    return () => {
      this.watchers.delete(watcher);
    };
  }

  announcing(): boolean {
    return this.watchers.size > 0;
  }

  async listAudit(limit = 100, offset = 0): Promise<AuditEntry[]> {
    checkPage(limit, offset);
    return this.audit.slice(offset, offset + limit).map((entry) => ({ ...entry }));
  }

  async close(): Promise<void> {
    this.watchers.clear();
  }

  /** Delivers later, and only while the watcher is still registered. */
  private announce(watcher: (version: number) => void, version: number): void {
    queueMicrotask(() => {
      if (this.watchers.has(watcher)) watcher(version);
    });
  }
}
