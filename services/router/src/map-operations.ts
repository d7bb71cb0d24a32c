import { randomBytes } from "node:crypto";
import { ServerError, Status } from "nice-grpc";
import { messageOf } from "@codeq/common";
import {
  internal,
  ShardState,
  type AssignCommandRequest,
  type AssignCommandResponse,
  type ListAuditEventsResponse,
  type ListMigrationsRequest,
  type ListMigrationsResponse,
  type Migration as WireMigration,
  type MigrationSide,
  type MovePlan,
  type Shard,
  type VerifyMigrationResponse,
} from "@codeq/proto";
import {
  currentShardOf,
  draftOf,
  entry,
  isEndpoint,
  isUnfinished,
  isVersionConflict,
  movesTenant,
  NoShardMapError,
  progressId,
  queueShardsOf,
  NAME_PATTERN,
  SHARD_ID_PATTERN,
  sharesEndpoint,
  ShardMapError,
  StaticMapError,
  takesFrom,
  tenantKey,
  updateMap,
  type AuditEntry,
  type MapSource,
  type Migration,
  type MigrationStore,
  type RoutingTable,
  type ShardMap,
  type ShardMapDraft,
} from "@codeq/shardmap";
import { migrationToWire } from "./admin-wire";
import { asServerError } from "./fan-out";
import { addCounts, emptyQueueCounts, liveTasks } from "./queue-counts";
import type { Routing } from "./routing";

const invalid = (message: string) => new ServerError(Status.INVALID_ARGUMENT, message);
const precondition = (message: string) => new ServerError(Status.FAILED_PRECONDITION, message);

/** Migration ids as the router issues them (checked before any lookup or message uses one). */
const MIGRATION_ID = /^[A-Za-z0-9_.-]{1,128}$/;

function checkId(field: string, value: string, pattern: RegExp): void {
  if (!value) throw invalid(`${field} is required`);
  if (!pattern.test(value)) throw invalid(`${field} must match ${pattern.source}`);
}

function checkName(field: string, value: string): void {
  if (!NAME_PATTERN.test(value)) throw invalid(`${field} must match ${NAME_PATTERN.source}`);
}

/** A page token's text (page tokens of admin listings are opaque to callers); `pattern` must match it whole (INVALID_ARGUMENT otherwise). */
function tokenText(token: string, pattern: RegExp): RegExpExecArray {
  const m = pattern.exec(Buffer.from(token, "base64url").toString("utf8"));
  if (!m) throw invalid("page_token is not one this service issued");
  return m;
}
const encodeToken = (text: string) => Buffer.from(text, "utf8").toString("base64url");

/**
 * An audit page's token: where the entry after the page's last one was, and that last
 * entry's version (entries before it in the log, newer, are not listed again). An
 * offset alone ("o<n>", what routers issued before) is still taken during an upgrade.
 */
function auditCursorOf(page: string): { offset: number; before: number } {
  if (!page) return { offset: 0, before: Infinity };
  const m = tokenText(page, /^a(\d{1,15})v(\d{1,15})$|^o(\d{1,15})$/);
  if (m[3] !== undefined) return { offset: Number(m[3]), before: Infinity };
  return { offset: Number(m[1]), before: Number(m[2]) };
}
const auditTokenOf = (offset: number, version: number) => encodeToken(`a${offset}v${version}`);

/** A migrations page's token: its last migration's start and id, or an older router's offset. */
function migrationCursorOf(
  page: string,
): { startedAtMs: number; id: string } | { offset: number } | undefined {
  if (!page) return undefined;
  const m = tokenText(page, /^m(\d{1,15}) (\S{1,128})$|^o(\d{1,15})$/);
  if (m[3] !== undefined) return { offset: Number(m[3]) };
  return { startedAtMs: Number(m[1]), id: m[2]! };
}
const migrationTokenOf = (m: WireMigration) => encodeToken(`m${m.startedAtMs} ${m.id}`);

function pageSize(size: number): number {
  const n = size || 100;
  if (n > 1000) throw invalid(`page_size must be at most 1000, got ${size}`);
  return n;
}

/** The queue a migration or assignment names, for messages. */
const label = (command: string, tenant?: string) => (tenant ? `${command}/${tenant}` : command);

/**
 * A queue's own routing entry (a tenant override, or a command mapping when `tenant` is
 * unset): its key, the shard it names if there is one, and the shard the queue would
 * follow without it (its command's shard, or the default shard).
 */
function ownRoute(map: RoutingTable, command: string, tenant?: string) {
  const key = tenant ? tenantKey(command, tenant) : command;
  const own = entry(tenant ? map.tenants : map.commands, key);
  const inherited = tenant ? currentShardOf(map, command) : map.defaultShard;
  return { key, own, inherited };
}

/** `draft` with the queue's own routing entry naming `shard`, or taken away (undefined). */
function withOwnRoute(
  draft: ShardMapDraft,
  command: string,
  tenant: string | undefined,
  shard: string | undefined,
): ShardMapDraft {
  const { key } = ownRoute(draft, command, tenant);
  const table = tenant ? draft.tenants : draft.commands;
  const { [key]: _own, ...others } = table;
  const routed = shard === undefined ? others : { ...table, [key]: shard };
  return { ...draft, ...(tenant ? { tenants: routed } : { commands: routed }) };
}

/**
 * `err`, a failed read of the map, when it says the control store did not answer; not
 * when the store answered with no map or an invalid one (those calls then go to the
 * store and are answered for what it holds).
 */
const unanswered = (err: Error | undefined): Error | undefined =>
  err === undefined || err instanceof ShardMapError || err instanceof NoShardMapError
    ? undefined
    : err;

/** How long an admin call waits for the map read it asks for when the last one failed, ms. */
const STORE_RECHECK_MS = 100;

/** Another shard of `map` at `id`'s endpoint. */
const twinOf = (map: ShardMap, id: string): string | undefined =>
  Object.keys(map.shards).find((other) => other !== id && sharesEndpoint(map, id, other));

/** A read of the map for a change the control store did not answer. */
const storeDownError = (err: unknown) =>
  new ServerError(
    Status.UNAVAILABLE,
    `the control store does not answer: ${messageOf(err)}; map changes wait until it is back`,
  );

/** A read of migration records the control store did not answer. */
function storeUnavailable(err: unknown): never {
  throw new ServerError(
    Status.UNAVAILABLE,
    `the control store did not answer (${messageOf(err)}); finished migrations cannot be read now, retry`,
  );
}

/**
 * One side of migration `m` on `shard`, from its queues (or why they could not be read),
 * judged under `maps` (the map before counting and after): `counts` and `tenants` cover
 * the queues the move moves now (`movesTenant`), `unrouted` every tenant's queue of the
 * command on the shard that none of the maps reads there (a task a command-wide move
 * left behind for a tenant overridden since is as lost as any other).
 */
function migrationSide(
  maps: readonly ShardMap[],
  m: Migration,
  shard: string,
  queues: internal.QueueSummary[] | string,
): MigrationSide {
  const reads = (tenant: string) =>
    maps.some((map) => queueShardsOf(map, m.command, tenant).includes(shard));
  const side: MigrationSide = {
    shard,
    answered: typeof queues !== "string",
    error: typeof queues === "string" ? queues : "",
    counts: emptyQueueCounts(),
    moving: 0,
    routed: reads(m.tenant ?? ""),
    unrouted: 0,
    tenants: 0,
  };
  if (typeof queues === "string") return side;
  const now = maps[maps.length - 1]!;
  for (const q of queues) {
    if (!q.counts) continue;
    const held = liveTasks(q.counts) + q.moving;
    if (!reads(q.tenant)) side.unrouted += held;
    if (!movesTenant(now, m, q.tenant)) continue;
    addCounts(side.counts!, q.counts);
    side.moving += q.moving;
    if (held > 0) side.tenants++;
  }
  return side;
}

/**
 * What is wrong with one side of a verified migration, one sentence each; `maps` are
 * the map before counting and after it (`map`, the last).
 */
function sideProblems(maps: readonly ShardMap[], m: Migration, side: MigrationSide): string[] {
  const map = maps[maps.length - 1]!;
  if (!side.answered)
    // a shard removed from the map was asked, then, whether it held anything
    return entry(map.shards, side.shard) === undefined
      ? []
      : [`shard ${side.shard} did not answer (${side.error}); verify again once it does`];
  const problems: string[] = [];
  // a move that is over leaves nothing reserved, unless a source's map lagged behind
  // its abort (its mover puts that back once it sees the move gone) or another move of
  // the command that takes from that shard, in either map, reserved it
  const otherMove = maps.some((x) =>
    x.migrations.some(
      (o) =>
        o.id !== m.id && isUnfinished(o) && o.command === m.command && takesFrom(o, side.shard),
    ),
  );
  if (!isUnfinished(m) && side.moving > 0 && !otherMove)
    problems.push(
      `shard ${side.shard} holds ${side.moving} tasks of ${label(m.command, m.tenant)} reserved for this move, which is over, so no worker receives them; its mover puts them back once the map it holds shows the move over, and a restarted worker does for its ten newest aborted moves; should they stay, assigning the queue away from ${side.shard} moves them`,
    );
  if (side.unrouted > 0)
    problems.push(
      `shard ${side.shard} holds ${side.unrouted} ready, scheduled, leased, dead or reserved tasks of ${label(m.command, m.tenant)} where no router reads them under map version ${map.version}, so no worker receives them; they are kept, and assigning the queue to ${side.shard} and then back brings them into routing`,
    );
  return problems;
}

/** The worker at a shard's endpoint answers as another shard (`MapOperations.workerOf`). */
class NotItsWorker extends ServerError {
  constructor(
    /** What was found, for a caller that words its own message. */
    readonly found: string,
    details: string,
  ) {
    super(Status.FAILED_PRECONDITION, details);
  }
}

/**
 * The operator's changes to the shard map (AssignCommand, AbortMigration,
 * RegisterShard, RemoveShard) and the migration views. Every change is a
 * validated compare-and-set recorded in the audit log with the caller as actor.
 */
export class MapOperations {
  constructor(
    private readonly routing: Routing,
    private readonly source: MapSource,
    /** Where migrations' progress and finished ones are kept; none with a static map. */
    private readonly store: MigrationStore | undefined,
  ) {}

  /**
   * Why the control store is known not to answer (this router's last read of the map
   * failed, and a read asked for now has not succeeded within STORE_RECHECK_MS), or
   * undefined. Admin calls then answer at once, rather than each wait out the store
   * connection's reconnects (seconds per read); after a passing blip the read asked
   * for clears it.
   */
  private async storeDown(): Promise<Error | undefined> {
    if (!unanswered(this.routing.cache.status().lastError)) return undefined;
    // the calls of one request (a map read, then a migration's records) wait once
    if (Date.now() - this.recheckedAt >= STORE_RECHECK_MS) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.routing.cache.refresh().catch(() => undefined),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, STORE_RECHECK_MS))),
      ]).finally(() => clearTimeout(timer));
      this.recheckedAt = Date.now();
    }
    return unanswered(this.routing.cache.status().lastError);
  }

  /** When `storeDown` last asked the store again. */
  private recheckedAt = 0;

  /** A migration's progress; none while the control store does not answer. */
  private async progress(m: Migration) {
    if (await this.storeDown()) return undefined;
    return this.store?.progress(progressId(m)).catch(() => undefined);
  }

  /** A finished migration's record; UNAVAILABLE while the control store does not answer. */
  private async finished(id: string) {
    const down = await this.storeDown();
    if (down) storeUnavailable(down);
    return this.store?.finished(id).catch(storeUnavailable);
  }

  /** Finished migrations' records; UNAVAILABLE while the control store does not answer. */
  private async listFinished() {
    const down = await this.storeDown();
    if (down) storeUnavailable(down);
    return this.store?.listFinished().catch(storeUnavailable);
  }

  /** Reads the map from the control store (admin calls act on the newest map, not the cache). */
  private async freshMap(): Promise<ShardMap> {
    const down = await this.storeDown();
    if (down) throw storeDownError(down);
    try {
      const map = await this.source.get();
      if (map) return map;
    } catch (err) {
      // the store answered, with a map that is not valid: nothing to act on until fixed
      if (err instanceof ShardMapError)
        throw precondition(`the control store's shard map is not valid: ${err.message}`);
      throw storeDownError(err);
    }
    throw new ServerError(Status.FAILED_PRECONDITION, "the control store holds no shard map");
  }

  /** Writes a change; maps validation and version conflicts to statuses. */
  private async write(
    actor: string,
    action: string,
    summary: string,
    edit: (map: ShardMap) => ShardMapDraft | undefined,
    expectedVersion = 0,
  ): Promise<ShardMap> {
    try {
      const { map } = await updateMap(
        this.source,
        (current) => {
          if (expectedVersion && current.version !== expectedVersion)
            throw new ServerError(
              Status.ABORTED,
              `the shard map is at version ${current.version}, not ${expectedVersion}; read it again and retry`,
            );
          return edit(current);
        },
        { actor, action, summary },
        expectedVersion ? 1 : 5,
      );
      void this.routing.cache.refresh();
      return map;
    } catch (err) {
      if (err instanceof ServerError) throw err;
      if (isVersionConflict(err)) throw new ServerError(Status.ABORTED, err.message);
      if (err instanceof StaticMapError) throw precondition(err.message);
      if (err instanceof ShardMapError) throw precondition(err.message);
      throw new ServerError(Status.UNAVAILABLE, `the control store: ${(err as Error).message}`);
    }
  }

  /**
   * Moves a queue (or a command) to `req.shard`. Refused unless the target's own worker
   * answers, serves and reaches its store: an assignment onto a worker that is not there
   * (a mistyped endpoint, a worker not started yet) would send every enqueue of the
   * command to it, failing, until the move were aborted. `signal`: the caller left; a
   * move not written by then is not written.
   */
  async assign(
    req: AssignCommandRequest,
    actor: string,
    signal?: AbortSignal,
  ): Promise<AssignCommandResponse> {
    if (!req.command) throw invalid("command is required");
    checkName("command", req.command);
    if (req.tenant) checkName("tenant", req.tenant);
    checkId("shard", req.shard, SHARD_ID_PATTERN);
    const map = await this.freshMap();
    const from = this.owner(map, req.command, req.tenant);
    this.checkAssignable(map, req, from);
    if (req.expectedVersion && req.expectedVersion !== map.version)
      throw new ServerError(
        Status.ABORTED,
        `the shard map is at version ${map.version}, not ${req.expectedVersion}; read it again and retry`,
      );
    if (from === req.shard) {
      // already there; an entry of its own that only repeats what the queue would follow
      // anyway goes, as after a move (a later move of the whole command carries it along)
      if (req.dryRun || !this.redundantEntry(map, req))
        return { mapVersion: map.version, plan: [], migrations: [] };
      const written = await this.write(
        actor,
        "AssignCommand",
        `${label(req.command, req.tenant)}: stays on ${req.shard}, its own entry dropped (it follows ${req.tenant ? "its command's shard" : "the default shard"}, the same)`,
        (current) => {
          if (!this.redundantEntry(current, req))
            throw new ServerError(
              Status.ABORTED,
              `the routing of ${label(req.command, req.tenant)} changed meanwhile; look at the map again`,
            );
          return withOwnRoute(draftOf(current), req.command, req.tenant, undefined);
        },
        req.expectedVersion,
      );
      return { mapVersion: written.version, plan: [], migrations: [] };
    }
    const target = await this.workerOf(
      map,
      req.shard,
      `cannot move ${label(req.command, req.tenant)} to shard ${req.shard}`,
      "start its worker, or correct its endpoint in the map (RemoveShard, then RegisterShard)",
      { depth: false, signal },
    );
    if (target.lifecycle && target.lifecycle !== "serving")
      throw precondition(
        `cannot move ${label(req.command, req.tenant)} to shard ${req.shard}: its worker is ${target.lifecycle}; try again once it serves`,
      );
    const plan = await this.plan(map, req, from, signal);
    if (req.dryRun) return { mapVersion: map.version, plan: [plan], migrations: [] };

    const migration: Migration = {
      id: `mig-${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`,
      command: req.command,
      ...(req.tenant ? { tenant: req.tenant } : {}),
      from,
      to: req.shard,
      state: "copying",
      startedAtMs: Date.now(),
      requestedBy: actor,
    };
    const written = await this.write(
      actor,
      "AssignCommand",
      `${label(req.command, req.tenant)}: ${from} → ${req.shard} (${migration.id})`,
      (current) => {
        if (signal?.aborted)
          throw new ServerError(
            Status.CANCELLED,
            "the caller went away before the move was written; nothing changed",
          );
        // the map may have moved on since it was read: check again on what is written
        const owner = this.owner(current, req.command, req.tenant);
        this.checkAssignable(current, req, owner);
        if (owner !== from)
          throw new ServerError(
            Status.ABORTED,
            `${label(req.command, req.tenant)} moved to ${owner} meanwhile; look at the map again`,
          );
        // a queue moved to where it would go without an entry of its own (a tenant to
        // its command's shard, a command to the default) loses its entry: assigning a
        // move back leaves no pin that a later move of the whole command would skip
        const { own, inherited } = ownRoute(current, req.command, req.tenant);
        const draft = withOwnRoute(
          draftOf(current),
          req.command,
          req.tenant,
          req.shard === inherited ? undefined : req.shard,
        );
        const hadOwnRoute = own !== undefined;
        const started = { ...migration, hadOwnRoute, mapVersion: current.version + 1 };
        return { ...draft, migrations: [...draft.migrations, started] };
      },
      req.expectedVersion,
    );
    const started = written.migrations.find((m) => m.id === migration.id) ?? migration;
    return { mapVersion: written.version, plan: [plan], migrations: [migrationToWire(started)] };
  }

  /**
   * Whether the queue's own routing entry (a tenant override, a command mapping) names
   * what the queue would follow without it (its command's shard, the default shard),
   * with no move of the command unfinished.
   */
  private redundantEntry(map: ShardMap, req: AssignCommandRequest): boolean {
    const { own, inherited } = ownRoute(map, req.command, req.tenant || undefined);
    return (
      own !== undefined &&
      own === inherited &&
      !map.migrations.some((m) => isUnfinished(m) && m.command === req.command)
    );
  }

  /** The shard a queue (or a whole command, tenant unset) is routed to now. */
  private owner(map: ShardMap, command: string, tenant: string): string {
    return currentShardOf(map, command, tenant || undefined);
  }

  private checkAssignable(map: ShardMap, req: AssignCommandRequest, from: string): void {
    const target = entry(map.shards, req.shard);
    if (!target) throw new ServerError(Status.NOT_FOUND, `no shard ${req.shard} in the shard map`);
    if (from === req.shard) return;
    if (target.state !== "active")
      throw precondition(
        `shard ${req.shard} is ${target.state}; only an active shard takes new queues`,
      );
    const running = map.migrations.find(
      (m) =>
        isUnfinished(m) &&
        m.command === req.command &&
        (!req.tenant || m.tenant === undefined || m.tenant === req.tenant),
    );
    if (running)
      throw precondition(
        `migration ${running.id} of ${label(running.command, running.tenant)} (${running.from} → ${running.to}) is ${running.state}; wait for it to finish or abort it first`,
      );
    for (const shard of [from, req.shard]) {
      const twin = twinOf(map, shard);
      if (twin)
        throw precondition(
          `shard ${shard} shares its endpoint with shard ${twin} (a map written before two shards were refused one endpoint): the worker there is one of them only, so a move from or to either would not end; remove the name its worker does not answer to first (RemoveShard)`,
        );
    }
  }

  /**
   * Every queue of `command` shard `shard` holds (only `tenant`'s when set), with its
   * counts, page by page; each page within the fan-out timeout.
   */
  private async queuesOn(
    shard: string,
    command: string,
    tenant = "",
    signal?: AbortSignal,
  ): Promise<internal.QueueSummary[]> {
    const conn = this.routing.pool.get(shard);
    const queues: internal.QueueSummary[] = [];
    let pageToken = "";
    do {
      const page = await conn.internal.listQueues(
        { command, tenant, pageSize: 1000, pageToken },
        { deadline: new Date(Date.now() + this.routing.config.fanoutTimeoutMs), signal },
      );
      queues.push(...page.queues);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return queues;
  }

  /** What a move of the queue(s) from `from` would carry, counted on `from` now. */
  private async plan(
    map: ShardMap,
    req: AssignCommandRequest,
    from: string,
    signal?: AbortSignal,
  ): Promise<MovePlan> {
    const counts = emptyQueueCounts();
    const tenants: string[] = [];
    const move = { command: req.command, tenant: req.tenant || undefined };
    try {
      for (const q of await this.queuesOn(from, req.command, req.tenant, signal)) {
        if (!movesTenant(map, move, q.tenant) || !q.counts) continue;
        tenants.push(q.tenant);
        addCounts(counts, q.counts);
      }
    } catch (err) {
      if (signal?.aborted) throw new ServerError(Status.CANCELLED, "the caller went away");
      const why = `cannot count what shard ${from} holds: ${messageOf(err)}`;
      if (req.dryRun) throw new ServerError(Status.UNAVAILABLE, why);
      // a real move does not need the counts: the mover finds the tasks itself; the
      // plan says they are missing rather than show an empty queue
      return {
        fromShard: from,
        toShard: req.shard,
        tenants: [],
        counts: emptyQueueCounts(),
        notCounted: why,
      };
    }
    return {
      fromShard: from,
      toShard: req.shard,
      tenants: req.tenant ? [] : tenants,
      counts,
      notCounted: "",
    };
  }

  async migration(id: string): Promise<WireMigration> {
    checkId("id", id, MIGRATION_ID);
    const map = await this.freshMap().catch(() => this.routing.map);
    const live = map.migrations.find((m) => m.id === id);
    if (live) return migrationToWire(live, await this.progress(live));
    const done = await this.finished(id);
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
    const before = await this.mapForCheck();
    const live = before.map.migrations.find((m) => m.id === id);
    const record = live ? { migration: live, progress: await this.progress(live) } : undefined;
    const found = record ?? (await this.finished(id));
    if (!found) throw new ServerError(Status.NOT_FOUND, `no migration ${id}`);
    const m = found.migration;
    const [fromQueues, toQueues] = await Promise.all([
      this.sideQueues(before.map, m, m.from, signal),
      this.sideQueues(before.map, m, m.to, signal),
    ]);
    // read again after counting: a change meanwhile (the queue assigned back, say) may
    // have routed what was counted; a task is unrouted only where neither map reads it
    const after = await this.mapForCheck();
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

  /** The control store's map, or this router's when the store does not answer (`cached`). */
  private mapForCheck(): Promise<{ map: ShardMap; cached: boolean }> {
    return this.freshMap().then(
      (map) => ({ map, cached: false }),
      () => ({ map: this.routing.map, cached: true }),
    );
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
      return await this.queuesOn(shard, m.command, m.tenant, signal);
    } catch (err) {
      return asServerError(conn.toServerError(err)).details;
    }
  }

  async listMigrations(req: ListMigrationsRequest): Promise<ListMigrationsResponse> {
    const size = pageSize(req.pageSize);
    const cursor = migrationCursorOf(req.pageToken);
    const map = await this.freshMap().catch(() => this.routing.map);
    const live = map.migrations;
    const all: WireMigration[] = [];
    for (const m of live) all.push(migrationToWire(m, await this.progress(m)));
    if (req.includeFinished) {
      for (const f of (await this.listFinished()) ?? [])
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

  async abort(id: string, actor: string): Promise<WireMigration> {
    checkId("id", id, MIGRATION_ID);
    const map = await this.freshMap();
    const m = map.migrations.find((x) => x.id === id);
    if (!m) {
      if (await this.finished(id))
        throw precondition(`migration ${id} has already finished; assign the queue back instead`);
      throw new ServerError(Status.NOT_FOUND, `no migration ${id}`);
    }
    if (m.state === "aborting") return migrationToWire(m);
    const written = await this.write(
      actor,
      "AbortMigration",
      `${id}: ${label(m.command, m.tenant)} back to ${m.from}`,
      (current) => {
        const live = current.migrations.find((x) => x.id === id);
        // finished between the read above and this write: nothing to abort any more
        if (!live)
          throw precondition(`migration ${id} has already finished; assign the queue back instead`);
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
    return after ? migrationToWire(after, await this.progress(after)) : this.migration(id);
  }

  async registerShard(shard: Shard | undefined, actor: string): Promise<number> {
    if (!shard?.id) throw invalid("shard.id is required");
    if (!SHARD_ID_PATTERN.test(shard.id))
      throw invalid(`shard.id must match ${SHARD_ID_PATTERN.source}`);
    if (!isEndpoint(shard.endpoint)) throw invalid("shard.endpoint must be host:port");
    if (!(shard.state in ShardState) || shard.state < 0)
      throw invalid(`shard.state must be ACTIVE, DRAINING or left unset, got ${shard.state}`);
    const state = shard.state === ShardState.SHARD_STATE_DRAINING ? "draining" : "active";
    const map = await this.write(
      actor,
      "RegisterShard",
      `shard ${shard.id} at ${shard.endpoint} (${state})`,
      (current) => {
        if (entry(current.shards, shard.id))
          throw new ServerError(Status.ALREADY_EXISTS, `shard ${shard.id} is already in the map`);
        const draft = draftOf(current);
        return {
          ...draft,
          shards: { ...draft.shards, [shard.id]: { endpoint: shard.endpoint, state } },
        };
      },
    );
    return map.version;
  }

  async removeShard(id: string, actor: string): Promise<number> {
    checkId("id", id, SHARD_ID_PATTERN);
    const map = await this.freshMap();
    this.checkRemovable(map, id);
    // a worker whose store does not answer reports a depth of 0: that proves nothing
    const status = await this.workerOf(
      map,
      id,
      `cannot confirm shard ${id} holds nothing`,
      "bring it up, or stop routing to it and wait",
      { depth: true },
    ).catch((err: unknown) => {
      // its own worker cannot be asked: the map names another there
      if (err instanceof NotItsWorker)
        throw precondition(
          `${err.found}: shard ${id}'s own worker cannot be asked whether it holds anything; bring that worker back at ${entry(map.shards, id)?.endpoint ?? "its endpoint"}, or remove shard ${id} from the stored map by hand once you know its store is empty`,
        );
      throw err;
    });
    // a second id for another shard's worker (a map written before two shards were
    // refused one endpoint): what that worker holds is the other shard's, still mapped
    if (status.queueDepth > 0 && status.shard === id)
      throw precondition(
        `shard ${id} still holds ${status.queueDepth} tasks; move its queues away first`,
      );
    const written = await this.write(actor, "RemoveShard", `shard ${id}`, (current) => {
      this.checkRemovable(current, id);
      const draft = draftOf(current);
      const { [id]: _gone, ...shards } = draft.shards;
      return { ...draft, shards };
    });
    return written.version;
  }

  /**
   * The status of shard `id`'s worker, asked at the map's endpoint within the fan-out
   * timeout. UNAVAILABLE while this router has not connected to it there (the control
   * store's map is ahead of its own, or the shard was registered again elsewhere);
   * FAILED_PRECONDITION, beginning with `cannot` and ending with `remedy`, when it does
   * not answer or its store does not; NotItsWorker (a FAILED_PRECONDITION) when the
   * worker there answers as a shard the map does not place there. The shard's depth is
   * read only when asked for (one stats read per queue there: on a shard of very many
   * queues it could outlast the timeout, and a move onto it does not need it).
   */
  private async workerOf(
    map: ShardMap,
    id: string,
    cannot: string,
    remedy: string,
    wants: { readonly depth: boolean; readonly signal?: AbortSignal },
  ): Promise<internal.GetShardStatusResponse> {
    const { signal } = wants;
    if (
      !this.routing.pool.has(id) ||
      this.routing.pool.get(id).endpoint !== entry(map.shards, id)?.endpoint
    )
      throw new ServerError(
        Status.UNAVAILABLE,
        `this router has not connected to shard ${id} yet (its map is at version ${this.routing.map.version}, the control store's at ${map.version}); try again in a moment`,
      );
    const status = await this.routing.pool
      .get(id)
      .internal.getShardStatus(
        { withoutDepth: !wants.depth },
        { deadline: new Date(Date.now() + this.routing.config.fanoutTimeoutMs), signal },
      )
      .catch((err: unknown) => {
        if (signal?.aborted) throw new ServerError(Status.CANCELLED, "the caller went away");
        throw precondition(`${cannot} (${(err as Error).message}); ${remedy}`);
      });
    if (!status.storeReachable)
      throw precondition(`${cannot}: its store does not answer; bring the store back first`);
    if (status.shard !== id && !sharesEndpoint(map, id, status.shard))
      throw new NotItsWorker(
        `the worker at shard ${id}'s endpoint answers as shard ${status.shard || "(none)"}, which the map does not place there`,
        `${cannot}: the worker at its endpoint answers as shard ${status.shard || "(none)"}; ${remedy}`,
      );
    return status;
  }

  private checkRemovable(map: ShardMap, id: string): void {
    if (!entry(map.shards, id))
      throw new ServerError(Status.NOT_FOUND, `no shard ${id} in the shard map`);
    if (map.defaultShard === id)
      throw precondition(
        `shard ${id} is the default shard: no admin call changes the default (set defaultShard in the stored map by hand, through its compare-and-set, then remove the shard)`,
      );
    const command = Object.entries(map.commands).find(([, s]) => s === id);
    if (command)
      throw precondition(
        `command ${command[0]} is assigned to shard ${id}; assign it elsewhere first`,
      );
    const override = Object.entries(map.tenants).find(([, s]) => s === id);
    if (override)
      throw precondition(`${override[0]} is assigned to shard ${id}; assign it elsewhere first`);
    const migration = map.migrations.find((m) => isUnfinished(m) && (m.from === id || m.to === id));
    if (migration)
      throw precondition(`migration ${migration.id} involves shard ${id}; wait for it or abort it`);
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
