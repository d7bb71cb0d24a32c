import { ServerError, Status } from "nice-grpc";
import { messageOf } from "@codeq/common";
import type { AssignCommandRequest, AssignCommandResponse, MovePlan } from "@codeq/proto";
import {
  currentShardOf,
  draftOf,
  entry,
  isUnfinished,
  movesTenant,
  newMigrationId,
  resolveCurrent,
  SHARD_ID_PATTERN,
  sharesEndpoint,
  type Migration,
  type ShardMap,
} from "@codeq/shardmap";
import { checkId, checkName, invalid, precondition } from "./admin-checks";
import type { AdminStore } from "./admin-store";
import { migrationToWire } from "./admin-wire";
import { label, ownRoute, withOwnRoute } from "./own-route";
import { addCounts, emptyQueueCounts } from "./queue-counts";
import type { Routing } from "./routing";
import { queuesOn, servingWorker } from "./worker-status";

/** Another shard of `map` at `id`'s endpoint. */
export const twinOf = (map: ShardMap, id: string): string | undefined =>
  Object.keys(map.shards).find((other) => other !== id && sharesEndpoint(map, id, other));

/**
 * Moves a queue (or a command) to `req.shard`. Refused unless the target's own worker
 * answers, serves and reaches its store: an assignment onto a worker that is not there
 * (a mistyped endpoint, a worker not started yet) would send every enqueue of the
 * command to it, failing, until the move were aborted. `signal`: the caller left; a
 * move not written by then is not written.
 */
export async function assignCommand(
  admin: AdminStore,
  routing: Routing,
  req: AssignCommandRequest,
  actor: string,
  signal?: AbortSignal,
): Promise<AssignCommandResponse> {
  if (!req.command) throw invalid("command is required");
  checkName("command", req.command);
  if (req.tenant) checkName("tenant", req.tenant);
  checkId("shard", req.shard, SHARD_ID_PATTERN);
  const map = await admin.freshMap();
  const from = ownerOf(map, req.command, req.tenant);
  checkAssignable(map, req, from);
  if (req.expectedVersion && req.expectedVersion !== map.version)
    throw new ServerError(
      Status.ABORTED,
      `the shard map is at version ${map.version}, not ${req.expectedVersion}; read it again and retry`,
    );
  if (from === req.shard) {
    // already there; an entry of its own that only repeats what the queue would follow
    // anyway goes, as after a move (a later move of the whole command carries it along)
    if (req.dryRun || !redundantEntry(map, req))
      return { mapVersion: map.version, plan: [], migrations: movingHere(map, req) };
    const written = await admin.write(
      actor,
      "AssignCommand",
      `${label(req.command, req.tenant)}: stays on ${req.shard}, its own entry dropped (it follows ${req.tenant ? "its command's shard" : "the default shard"}, the same)`,
      (current) => {
        if (!redundantEntry(current, req))
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
  await servingWorker(
    routing,
    map,
    req.shard,
    `cannot move ${label(req.command, req.tenant)} to shard ${req.shard}`,
    "start its worker, or correct its endpoint in the map (RemoveShard, then RegisterShard)",
    signal,
  );
  const plan = await planMove(routing, map, req, from, signal);
  if (req.dryRun) return { mapVersion: map.version, plan: [plan], migrations: [] };

  const migration: Migration = {
    id: newMigrationId(),
    command: req.command,
    ...(req.tenant ? { tenant: req.tenant } : {}),
    from,
    to: req.shard,
    state: "copying",
    startedAtMs: Date.now(),
    requestedBy: actor,
  };
  const written = await admin.write(
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
      const owner = ownerOf(current, req.command, req.tenant);
      checkAssignable(current, req, owner);
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
 * The unfinished move of this very queue onto the shard asked for: what an assignment
 * sent again (its first answer lost) is answered with, so its caller can follow it.
 */
function movingHere(map: ShardMap, req: AssignCommandRequest) {
  return map.migrations
    .filter(
      (m) =>
        isUnfinished(m) &&
        m.state !== "aborting" &&
        m.to === req.shard &&
        m.command === req.command &&
        (m.tenant ?? "") === req.tenant,
    )
    .map((m) => migrationToWire(m));
}

/**
 * Whether the queue's own routing entry (a tenant override, a command mapping) names
 * what the queue would follow without it (its command's shard, the default shard),
 * with no move of the command unfinished.
 */
function redundantEntry(map: ShardMap, req: AssignCommandRequest): boolean {
  const { own, inherited } = ownRoute(map, req.command, req.tenant || undefined);
  return (
    own !== undefined &&
    own === inherited &&
    !map.migrations.some((m) => isUnfinished(m) && m.command === req.command)
  );
}

/** The shard a queue (or a whole command, tenant unset) is routed to now. */
function ownerOf(map: ShardMap, command: string, tenant: string): string {
  return currentShardOf(map, command, tenant || undefined);
}

function checkAssignable(map: ShardMap, req: AssignCommandRequest, from: string): void {
  const target = entry(map.shards, req.shard);
  if (!target) throw new ServerError(Status.NOT_FOUND, `no shard ${req.shard} in the shard map`);
  if (from === req.shard) return;
  // the former default is read for the queues that follow the default until the change
  // is finished: a move of one of them now would leave what it took there unread
  if (
    map.formerDefault !== undefined &&
    resolveCurrent(map, req.command, req.tenant || undefined).by === "default"
  )
    throw precondition(
      `the change of the default shard from ${map.formerDefault} to ${map.defaultShard} is not finished: call SetDefaultShard for ${map.defaultShard} again to finish it first`,
    );
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

/** What a move of the queue(s) from `from` would carry, counted on `from` now. */
async function planMove(
  routing: Routing,
  map: ShardMap,
  req: AssignCommandRequest,
  from: string,
  signal?: AbortSignal,
): Promise<MovePlan> {
  const counts = emptyQueueCounts();
  const tenants: string[] = [];
  const move = { command: req.command, tenant: req.tenant || undefined };
  try {
    for (const q of await queuesOn(routing, from, req.command, req.tenant, signal)) {
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
