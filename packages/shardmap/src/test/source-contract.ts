/**
 * The contract every MapSource passes (Vitess topo's shared test suite): versioned
 * compare-and-set from version 0, conflicts that report the current version, one
 * winner among racing writers, validation before any write, announcements to
 * watchers, and a capped audit log. A store is one namespace of a backend; each
 * `open()` is another client of it, as another process would be.
 */
import { ShardMapError, VersionConflictError } from "../errors";
import type { ShardMap } from "../shard-map";
import type { MapSource } from "../source";
import { change, draft, waitFor } from "./fixtures";

export interface MapSourceStore {
  /** A client of this store (the same or a new one; the store closes them all). */
  open(): MapSource;
  close(): Promise<void>;
}

/** A new, empty store whose audit log keeps `auditCap` entries. */
export type MapSourceFactory = (options: { auditCap: number }) => Promise<MapSourceStore>;

export function describeMapSource(name: string, factory: MapSourceFactory): void {
  describe(`MapSource contract: ${name}`, () => {
    let stores: MapSourceStore[] = [];
    const newStore = async (auditCap = 100) => {
      const store = await factory({ auditCap });
      stores.push(store);
      return store;
    };
    afterEach(async () => {
      for (const store of stores) await store.close();
      stores = [];
    });

    it("starts with no map and no audit entries", async () => {
      const source = (await newStore()).open();
      expect(await source.get()).toBeUndefined();
      expect(await source.listAudit()).toEqual([]);
    });

    it("writes the first map at version 0 as version 1, visible to every client", async () => {
      const store = await newStore();
      const [writer, reader] = [store.open(), store.open()];
      const before = Date.now();
      const written = await writer.compareAndSet(0, draft(), change());
      expect(written).toEqual({ ...draft(), version: 1, updatedAtMs: expect.any(Number) });
      expect(written.updatedAtMs).toBeGreaterThanOrEqual(before);
      expect(await reader.get()).toEqual(written);
      const second = await reader.compareAndSet(1, draft({ defaultShard: "b" }), change());
      expect(second).toMatchObject({ version: 2, defaultShard: "b" });
      expect(await writer.get()).toEqual(second);
    });

    it("refuses a write from another version with the current one, changing nothing", async () => {
      const source = (await newStore()).open();
      await expect(source.compareAndSet(3, draft(), change())).rejects.toMatchObject({
        name: "VersionConflictError",
        expectedVersion: 3,
        currentVersion: 0,
      });
      expect(await source.get()).toBeUndefined();
      await source.compareAndSet(0, draft(), change());
      const v2 = await source.compareAndSet(1, draft({ defaultShard: "b" }), change());
      for (const stale of [0, 1, 5]) {
        const err = await source.compareAndSet(stale, draft(), change()).catch((e) => e);
        expect(err).toBeInstanceOf(VersionConflictError);
        expect(err).toMatchObject({ expectedVersion: stale, currentVersion: 2 });
      }
      expect(await source.get()).toEqual(v2);
      expect(await source.listAudit()).toHaveLength(2);
    });

    it("lets exactly one of 10 writers racing from the same version win", async () => {
      const store = await newStore();
      await store.open().compareAndSet(0, draft(), change("first"));
      const writers = Array.from({ length: 10 }, () => store.open());
      const results = await Promise.allSettled(
        writers.map((w, i) =>
          w.compareAndSet(1, draft({ commands: { [`CMD_${i}`]: "b" } }), change(`writer ${i}`)),
        ),
      );
      const won = results.filter((r) => r.status === "fulfilled");
      const lost = results.filter((r) => r.status === "rejected");
      expect(won).toHaveLength(1);
      for (const r of lost) {
        expect(r.reason).toBeInstanceOf(VersionConflictError);
        expect(r.reason).toMatchObject({ currentVersion: 2 });
      }
      const winner = (won[0] as PromiseFulfilledResult<ShardMap>).value;
      expect(await store.open().get()).toEqual(winner);
      const audit = await store.open().listAudit();
      expect(audit).toHaveLength(2);
      const winnerIndex = Object.keys(winner.commands)[0]!.replace("CMD_", "");
      expect(audit[0]).toMatchObject({ versionAfter: 2, summary: `writer ${winnerIndex}` });
    });

    it("refuses an invalid map with every problem, writing and announcing nothing", async () => {
      const store = await newStore();
      const [writer, watched] = [store.open(), store.open()];
      const v1 = await writer.compareAndSet(0, draft(), change());
      const heard: number[] = [];
      const unwatch = watched.watch((v) => heard.push(v));
      try {
        await waitFor(() => heard.includes(1), 2_000, "the watch to be live");
        const bad = draft({
          defaultShard: "zz",
          commands: { SEND_EMAIL: "nope", "bad name": "a" },
          tenants: { "SEND_EMAIL/acme": "gone" },
        });
        const err = await writer.compareAndSet(1, bad, change()).catch((e) => e);
        expect(err).toBeInstanceOf(ShardMapError);
        expect((err as ShardMapError).problems).toEqual(
          expect.arrayContaining([
            expect.stringContaining(`defaultShard: shard "zz" is not in shards`),
            expect.stringContaining(`commands.SEND_EMAIL: shard "nope" is not in shards`),
            expect.stringContaining(`command "bad name" must match`),
            expect.stringContaining(`tenants["SEND_EMAIL/acme"]: shard "gone" is not in shards`),
          ]),
        );
        expect(await writer.get()).toEqual(v1);
        expect(await writer.listAudit()).toHaveLength(1);
        // The refused write used no version: the next valid one is version 2.
        await writer.compareAndSet(1, draft({ defaultShard: "b" }), change());
        await waitFor(() => heard.includes(2), 2_000, "announcement of version 2");
        expect(heard).toEqual([1, 2]);
      } finally {
        unwatch();
      }
    });

    it("announces the stored version once watching, then every new version, until unwatched", async () => {
      const store = await newStore();
      const [writer, watched] = [store.open(), store.open()];
      const first: number[] = [];
      const second: number[] = [];
      const unwatchFirst = watched.watch((v) => first.push(v));
      await waitFor(() => first.length > 0, 2_000, "the watch to be live");
      expect(first).toEqual([0]);
      await writer.compareAndSet(0, draft(), change());
      await writer.compareAndSet(1, draft({ defaultShard: "b" }), change());
      await waitFor(() => first.includes(2), 2_000, "announcement of version 2");
      expect(first).toEqual([0, 1, 2]);

      const unwatchSecond = watched.watch((v) => second.push(v));
      await waitFor(() => second.length > 0, 2_000, "the second watch to be live");
      expect(second).toEqual([2]);
      unwatchFirst();
      await writer.compareAndSet(2, draft(), change());
      await waitFor(() => second.includes(3), 2_000, "announcement of version 3");
      expect(second).toEqual([2, 3]);
      expect(first).toEqual([0, 1, 2]);
      unwatchSecond();
    });

    it("records every write in the audit log, newest first, with paging", async () => {
      const source = (await newStore()).open();
      const before = Date.now();
      await source.compareAndSet(0, draft(), change("create", "alice", "RegisterShard"));
      await source.compareAndSet(
        1,
        draft({ defaultShard: "b" }),
        change("default b", "bob", "Set"),
      );
      await source.compareAndSet(2, draft(), change("default a", "mover", "MigrationCompleted"));
      const audit = await source.listAudit();
      expect(audit).toEqual([
        { atMs: expect.any(Number), actor: "mover", action: "MigrationCompleted", versionBefore: 2, versionAfter: 3, summary: "default a" },
        { atMs: expect.any(Number), actor: "bob", action: "Set", versionBefore: 1, versionAfter: 2, summary: "default b" },
        { atMs: expect.any(Number), actor: "alice", action: "RegisterShard", versionBefore: 0, versionAfter: 1, summary: "create" },
      ]); // prettier-ignore
      for (const entry of audit) expect(entry.atMs).toBeGreaterThanOrEqual(before);
      expect(await source.listAudit(1, 1)).toEqual([audit[1]]);
      expect(await source.listAudit(2, 2)).toEqual([audit[2]]);
      expect(await source.listAudit(10, 3)).toEqual([]);
    });

    it("keeps only the newest auditCap audit entries", async () => {
      const source = (await newStore(3)).open();
      for (let v = 0; v < 5; v++) {
        await source.compareAndSet(v, draft(), change(`write ${v + 1}`));
      }
      const audit = await source.listAudit(100);
      expect(audit.map((e) => e.versionAfter)).toEqual([5, 4, 3]);
    });

    it("gives each reader its own copy of the map", async () => {
      const source = (await newStore()).open();
      const written = await source.compareAndSet(0, draft(), change());
      (written.commands as Record<string, string>).SEND_EMAIL = "a";
      const read = (await source.get())!;
      (read.shards as Record<string, unknown>).x = {};
      expect(await source.get()).toEqual({ ...draft(), version: 1, updatedAtMs: read.updatedAtMs });
    });
  });
}
