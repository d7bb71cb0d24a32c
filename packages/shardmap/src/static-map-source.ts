/**
 * A MapSource over a static shard map file (`loadStaticSupplier`), for a deployment
 * without a control store: it reads as stored and announces its one version, never
 * changes, and refuses every write (change the file and restart instead).
 */
import type { ShardMap } from "./shard-map";
import type { AuditEntry, MapSource } from "./source";
import { loadStaticSupplier } from "./static-yaml-supplier";

/** A write to a static map: the file is the map. */
export class StaticMapError extends Error {
  override readonly name = "StaticMapError";
  constructor(readonly file: string) {
    super(
      `the shard map is the static file ${file}: change the file and restart the routers to change it`,
    );
  }
}

export class StaticMapSource implements MapSource {
  constructor(
    readonly map: ShardMap,
    readonly file: string,
  ) {}

  /** Reads and validates `file`; throws ShardMapError naming it and every problem. */
  static load(file: string): StaticMapSource {
    return new StaticMapSource(loadStaticSupplier(file).map, file);
  }

  get(): Promise<ShardMap> {
    return Promise.resolve(this.map);
  }

  compareAndSet(): Promise<ShardMap> {
    return Promise.reject(new StaticMapError(this.file));
  }

  watch(onAnnounce: (version: number) => void): () => void {
    onAnnounce(this.map.version);
    return () => undefined;
  }

  listAudit(): Promise<AuditEntry[]> {
    return Promise.resolve([]);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
