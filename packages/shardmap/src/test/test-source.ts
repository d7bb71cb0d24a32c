/**
 * A MapSource wrapper with faults to inject: lost announcements, failing or hanging
 * reads, held reads (that read early and answer late, like a GET
 * overtaken by a write), a map served in place of the real one, and fake announcements. It
 * counts reads and how many ran at once.
 */
import type { ShardMap, ShardMapDraft } from "../shard-map";
import type { AuditEntry, ChangeInfo, MapSource } from "../source";

export class TestSource implements MapSource {
  /** Watchers never hear announcements (a lost pub/sub connection). */
  dropAnnouncements = false;
  /** get() rejects with this. */
  failWith: Error | undefined;
  /** get() never settles. */
  hang = false;
  /** get() reads the inner source, then waits for this before answering. */
  gate: Promise<void> | undefined;
  /** get() answers this instead of the inner source's map. */
  serve: ShardMap | undefined;
  gets = 0;
  maxConcurrent = 0;
  private running = 0;
  private readonly watchers = new Set<(version: number) => void>();

  constructor(readonly inner: MapSource) {}

  async get(): Promise<ShardMap | undefined> {
    this.gets++;
    this.running++;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.running);
    try {
      if (this.hang) await new Promise(() => {});
      if (this.failWith) throw this.failWith;
      const map = this.serve ?? (await this.inner.get());
      if (this.gate) await this.gate;
      return map;
    } finally {
      this.running--;
    }
  }

  compareAndSet(
    expected: number,
    next: ShardMapDraft,
    change: ChangeInfo,
    previous?: ShardMap,
  ): Promise<ShardMap> {
    return this.inner.compareAndSet(expected, next, change, previous);
  }

  watch(onAnnounce: (version: number) => void): () => void {
    this.watchers.add(onAnnounce);
    const unwatch = this.inner.watch((version) => {
      if (!this.dropAnnouncements) onAnnounce(version);
    });
    return () => {
      this.watchers.delete(onAnnounce);
      unwatch();
    };
  }

  announcing(): boolean {
    return !this.dropAnnouncements && (this.inner.announcing?.() ?? false);
  }

  /** Holds every read (after it has read the inner source) until the returned function is called. */
  holdReads(): () => void {
    let release!: () => void;
    this.gate = new Promise((resolve) => (release = resolve));
    return () => {
      this.gate = undefined;
      release();
    };
  }

  /** Delivers a fake announcement to every watcher. */
  announce(version: number): void {
    for (const watcher of this.watchers) watcher(version);
  }

  listAudit(limit?: number, offset?: number): Promise<AuditEntry[]> {
    return this.inner.listAudit(limit, offset);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
