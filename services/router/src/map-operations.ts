import { ServerError, Status } from "nice-grpc";
import type {
  AssignCommandRequest,
  AssignCommandResponse,
  internal,
  ListAuditEventsResponse,
  ListMigrationsRequest,
  ListMigrationsResponse,
  Migration as WireMigration,
  SetDefaultShardResponse,
  Shard,
  ShardState,
  VerifyMigrationResponse,
} from "@codeq/proto";
import {
  draftOf,
  entry,
  isUnfinished,
  type AuditEntry,
  type MapSource,
  type Migration,
  type MigrationStore,
  type ShardMap,
} from "@codeq/shardmap";
import { checkId, MIGRATION_ID, precondition } from "./admin-checks";
import {
  auditCursorOf,
  auditTokenOf,
  migrationCursorOf,
  migrationTokenOf,
  pageSize,
} from "./admin-page-tokens";
import { AdminStore } from "./admin-store";
import { migrationToWire } from "./admin-wire";
import { assignCommand } from "./assign-command";
import { asServerError } from "./fan-out";
import { migrationSide, sideProblems } from "./migration-check";
import { label, ownRoute, withOwnRoute } from "./own-route";
import type { Routing } from "./routing";
import { setDefaultShard, type DefaultShardAsk } from "./default-shard";
import { registerShard, removeShard, setShardState, type RemoveShardAsk } from "./shard-membership";
import { queuesOn, servingWorker } from "./worker-status";

/**
 * The operator's changes to the shard map (AssignCommand, AbortMigration,
 * RegisterShard, RemoveShard, SetDefaultShard, SetShardState) and the migration
 * views. Every change is a validated compare-and-set recorded in the audit log with
 * the caller as actor.
 */
export class MapOperations {
  /** The control store these calls read and write. */
  private readonly admin: AdminStore;

  constructor(
    private readonly routing: Routing,
    private readonly source: MapSource,
    /** Where migrations' progress and finished ones are kept; none with a static map. */
    store: MigrationStore | undefined,
  ) {
    this.admin = new AdminStore(routing, source, store);
  }

  /** Moves a queue (or a command) to `req.shard` (`assignCommand`). */
  assign(
    req: AssignCommandRequest,
    actor: string,
    signal?: AbortSignal,
  ): Promise<AssignCommandResponse> {
    return assignCommand(this.admin, this.routing, req, actor, signal);
  }

  async migration(id: string): Promise<WireMigration> {
    checkId("id", id, MIGRATION_ID);
    const map = await this.admin.freshMap().catch(() => this.routing.map);
    const live = map.migrations.find((m) => m.id === id);
    if (live) return migrationToWire(live, await this.admin.progress(live));
    const done = await this.admin.finished(id);
    if (done) return migrationToWire(done.migration, done.progress);
    throw new ServerError(Status.NOT_FOUND, `no migration ${id}`);
  }

  /**
   * VerifyMigration: the migration's queue counted on both of its shards now, checked
   * against the current map (a shard routers no longer read for the queue must hold
   * none of its tasks).
   */
  async verify(id: string, signal?: AbortSignal): Promise<VerifyMigrationResponse> {
    checkId("id", id, MIGRATION_ID);
    const before = await this.admin.mapForCheck();
    const live = before.map.migrations.find((m) => m.id === id);
    const record = live
      ? { migration: live, progress: await this.admin.progress(live) }
      : undefined;
    const found = record ?? (await this.admin.finished(id));
    if (!found) throw new ServerError(Status.NOT_FOUND, `no migration ${id}`);
    const m = found.migration;
    const [fromQueues, toQueues] = await Promise.all([
      this.sideQueues(before.map, m, m.from, signal),
      this.sideQueues(before.map, m, m.to, signal),
    ]);
    // read again after counting: a change meanwhile (the queue assigned back, say) may
    // have routed what was counted; a task is unrouted only where neither map reads it
    const after = await this.admin.mapForCheck();
    const maps = [before.map, after.map];
    const source = migrationSide(maps, m, m.from, fromQueues);
    const target = migrationSide(maps, m, m.to, toQueues);
    const problems = [source, target].flatMap((side) => sideProblems(maps, m, side));
    if (before.cached || after.cached)
      problems.push(
        `the control store did not answer, so the check used this router's cached map (version ${after.map.version}), which may be behind; verify again once the store answers`,
      );
    return {
      migration: migrationToWire(m, found.progress),
      source,
      target,
      mapVersion: after.map.version,
      consistent: problems.length === 0,
      problems,
    };
  }

  /** The queues of migration `m`'s command on `shard`, or why they could not be read. */
  private async sideQueues(
    map: ShardMap,
    m: Migration,
    shard: string,
    signal?: AbortSignal,
  ): Promise<internal.QueueSummary[] | string> {
    const endpoint = entry(map.shards, shard)?.endpoint;
    if (endpoint === undefined) return `shard ${shard} is no longer in the shard map`;
    const conn = this.routing.pool.has(shard) ? this.routing.pool.get(shard) : undefined;
    if (conn?.endpoint !== endpoint)
      return `this router has not connected to shard ${shard} yet (its map is at version ${this.routing.map.version}); verify again in a moment`;
    try {
      return await queuesOn(this.routing, shard, m.command, m.tenant, signal);
    } catch (err) {
      return asServerError(conn.toServerError(err)).details;
    }
  }

  async listMigrations(req: ListMigrationsRequest): Promise<ListMigrationsResponse> {
    const size = pageSize(req.pageSize);
    const cursor = migrationCursorOf(req.pageToken);
    const map = await this.admin.freshMap().catch(() => this.routing.map);
    const live = map.migrations;
    const all: WireMigration[] = [];
    for (const m of live) all.push(migrationToWire(m, await this.admin.progress(m)));
    if (req.includeFinished) {
      for (const f of (await this.admin.listFinished()) ?? [])
        if (!live.some((m) => m.id === f.migration.id))
          all.push(migrationToWire(f.migration, f.progress));
    }
    // newest first, running or finished alike; a page's token names its last one, so
    // a move that starts or finishes while a caller pages on shifts nothing it lists
    const chosen = (req.command ? all.filter((m) => m.command === req.command) : all).sort(
      (a, b) => b.startedAtMs - a.startedAtMs || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0),
    );
    const rest =
      cursor === undefined
        ? chosen
        : "offset" in cursor
          ? chosen.slice(cursor.offset)
          : chosen.filter(
              (m) =>
                m.startedAtMs < cursor.startedAtMs ||
                (m.startedAtMs === cursor.startedAtMs && m.id < cursor.id),
            );
    const page = rest.slice(0, size);
    const last = page.at(-1);
    const next = rest.length > size && last ? migrationTokenOf(last) : "";
    return { migrations: page, nextPageToken: next };
  }

  async abort(id: string, actor: string, signal?: AbortSignal): Promise<WireMigration> {
    checkId("id", id, MIGRATION_ID);
    const map = await this.admin.freshMap();
    const m = map.migrations.find((x) => x.id === id);
    if (!m) {
      const done = await this.admin.finished(id);
      // aborted already (an abort sent again after its answer was lost, say): done
      if (done?.migration.state === "aborted")
        return migrationToWire(done.migration, done.progress);
      if (done) throw completed(id);
      throw new ServerError(Status.NOT_FOUND, `no migration ${id}`);
    }
    if (m.state === "aborting" || m.state === "aborted") return migrationToWire(m);
    // a finished move left in the map (a hand edit, an older writer): not turned back
    if (!isUnfinished(m)) throw completed(id);
    // the queue goes back to the source: one that does not serve would fail its
    // enqueues, and the abort would never end (everything moved is sent home to it)
    await servingWorker(
      this.routing,
      map,
      m.from,
      `cannot abort ${id}: it sends ${label(m.command, m.tenant)} back to shard ${m.from}`,
      "start that worker first (while the source is down the queue is served by the target, which keeps what it holds)",
      signal,
    );
    const written = await this.admin.write(
      actor,
      "AbortMigration",
      `${id}: ${label(m.command, m.tenant)} back to ${m.from}`,
      (current) => {
        const live = current.migrations.find((x) => x.id === id);
        // finished between the read above and this write: nothing to abort any more
        if (!live || !isUnfinished(live)) throw completed(id);
        if (live.state === "aborting") return undefined;
        // routed back to the source: the entry the move made is taken away when the
        // queue had none of its own before and what it then follows is the source
        // again; otherwise the entry names the source
        const { inherited } = ownRoute(current, live.command, live.tenant);
        const draft = withOwnRoute(
          draftOf(current),
          live.command,
          live.tenant,
          live.hadOwnRoute === false && inherited === live.from ? undefined : live.from,
        );
        const migrations = draft.migrations.map((x) =>
          x.id === id ? { ...x, state: "aborting" as const, updatedAtMs: Date.now() } : x,
        );
        return { ...draft, migrations };
      },
    );
    const after = written.migrations.find((x) => x.id === id);
    return after ? migrationToWire(after, await this.admin.progress(after)) : this.migration(id);
  }

  /** RegisterShard (`registerShard`); the map's version after. */
  registerShard(shard: Shard | undefined, actor: string): Promise<number> {
    return registerShard(this.admin, shard, actor);
  }

  /** SetDefaultShard (`setDefaultShard`). */
  setDefaultShard(
    req: DefaultShardAsk,
    actor: string,
    signal?: AbortSignal,
  ): Promise<SetDefaultShardResponse> {
    return setDefaultShard(this.admin, this.routing, req, actor, signal);
  }

  /** SetShardState (`setShardState`); the map's version after. */
  setShardState(id: string, state: ShardState, actor: string): Promise<number> {
    return setShardState(this.admin, id, state, actor);
  }

  /** RemoveShard (`removeShard`); the map's version after. */
  removeShard(req: RemoveShardAsk, actor: string): Promise<number> {
    return removeShard(this.admin, this.routing, req, actor);
  }

  async audit(size: number, token: string): Promise<ListAuditEventsResponse> {
    const limit = pageSize(size);
    const cursor = auditCursorOf(token);
    // Entries are listed newest first, and every change pushes one in front: the last
    // entry a page showed has moved down by as many since. From where it was, the
    // entries at or above the last version taken are skipped (the bound moves down with
    // every entry taken, as a change made between two reads of one page shifts the log
    // again); each change has its own version, so none is shown twice or passed over.
    const entries: AuditEntry[] = [];
    let before = cursor.before;
    let at = cursor.offset;
    let next = at;
    for (;;) {
      const chunk = await this.source.listAudit(limit + 1, at).catch((err: unknown) => {
        throw new ServerError(Status.UNAVAILABLE, `the control store: ${(err as Error).message}`);
      });
      chunk.forEach((e, i) => {
        if (entries.length > limit || e.versionAfter >= before) return;
        entries.push(e);
        before = e.versionAfter;
        if (entries.length <= limit) next = at + i + 1;
      });
      if (entries.length > limit || chunk.length <= limit) break;
      at += chunk.length;
    }
    const page = entries.slice(0, limit);
    return {
      events: page.map((e) => ({
        atMs: e.atMs,
        actor: e.actor,
        action: e.action,
        versionBefore: e.versionBefore,
        versionAfter: e.versionAfter,
        summary: e.summary,
      })),
      nextPageToken: entries.length > limit ? auditTokenOf(next, page.at(-1)!.versionAfter) : "",
    };
  }
}

/** An abort of a move that has finished (completed, or ended while the abort was asked). */
function completed(id: string): ServerError {
  return precondition(`migration ${id} has already finished; assign the queue back instead`);
}
