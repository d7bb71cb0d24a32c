import { ServerError, Status } from "nice-grpc";
import { ShardState, type Shard } from "@codeq/proto";
import {
  draftOf,
  entry,
  isEndpoint,
  isUnfinished,
  SHARD_ID_PATTERN,
  type Migration,
  type ShardMap,
  type ShardMapDraft,
} from "@codeq/shardmap";
import { checkId, invalid, precondition } from "./admin-checks";
import type { AdminStore } from "./admin-store";
import type { Routing } from "./routing";
import { ownRoute, withOwnRoute } from "./own-route";
import { NotItsWorker, servingWorker, workerOf } from "./worker-status";

/** RegisterShard and RemoveShard: a shard added to the map, or taken out of it once it holds nothing. */

export async function registerShard(
  admin: AdminStore,
  shard: Shard | undefined,
  actor: string,
): Promise<number> {
  if (!shard?.id) throw invalid("shard.id is required");
  if (!SHARD_ID_PATTERN.test(shard.id))
    throw invalid(`shard.id must match ${SHARD_ID_PATTERN.source}`);
  if (!isEndpoint(shard.endpoint)) throw invalid("shard.endpoint must be host:port");
  if (!(shard.state in ShardState) || shard.state < 0)
    throw invalid(`shard.state must be ACTIVE, DRAINING or left unset, got ${shard.state}`);
  const state = shard.state === ShardState.SHARD_STATE_DRAINING ? "draining" : "active";
  const map = await admin.write(
    actor,
    "RegisterShard",
    `shard ${shard.id} at ${shard.endpoint} (${state})`,
    (current) => {
      const held = entry(current.shards, shard.id);
      // the same registration sent again (its answer lost, say): done already
      if (held?.endpoint === shard.endpoint && held.state === state) return undefined;
      if (held)
        throw new ServerError(
          Status.ALREADY_EXISTS,
          `shard ${shard.id} is already in the map, at ${held.endpoint} (${held.state})`,
        );
      const draft = draftOf(current);
      return {
        ...draft,
        shards: { ...draft.shards, [shard.id]: { endpoint: shard.endpoint, state } },
      };
    },
  );
  return map.version;
}

/**
 * SetShardState: ACTIVE or DRAINING. The default shard is not set DRAINING (new
 * commands go to it); the state a shard has already changes nothing.
 */
export async function setShardState(
  admin: AdminStore,
  id: string,
  wire: ShardState,
  actor: string,
): Promise<number> {
  checkId("id", id, SHARD_ID_PATTERN);
  const state =
    wire === ShardState.SHARD_STATE_ACTIVE
      ? "active"
      : wire === ShardState.SHARD_STATE_DRAINING
        ? "draining"
        : undefined;
  if (!state) throw invalid(`state must be ACTIVE or DRAINING, got ${wire}`);
  const map = await admin.write(actor, "SetShardState", `shard ${id}: ${state}`, (current) => {
    const held = entry(current.shards, id);
    if (!held) throw new ServerError(Status.NOT_FOUND, `no shard ${id} in the shard map`);
    if (held.state === state) return undefined;
    if (state === "draining" && current.defaultShard === id)
      throw precondition(
        `shard ${id} is the default shard, which takes every new command: make another shard the default first (SetDefaultShard)`,
      );
    const draft = draftOf(current);
    return { ...draft, shards: { ...draft.shards, [id]: { ...held, state } } };
  });
  return map.version;
}

/** RemoveShard's request, as the router reads it. */
export interface RemoveShardAsk {
  readonly id: string;
  /** The shard is gone for good (`removeLostShard`). */
  readonly lost?: boolean;
  /** With `lost`: where the queues routed to it go. */
  readonly reassignTo?: string;
}

export async function removeShard(
  admin: AdminStore,
  routing: Routing,
  req: RemoveShardAsk,
  actor: string,
): Promise<number> {
  const { id } = req;
  checkId("id", id, SHARD_ID_PATTERN);
  if (req.lost) return removeLostShard(admin, routing, id, req.reassignTo ?? "", actor);
  if (req.reassignTo) throw invalid("reassign_to is only for a shard removed as lost");
  const map = await admin.freshMap();
  checkRemovable(map, id);
  // a worker whose store does not answer reports a depth of 0: that proves nothing
  const status = await workerOf(
    routing,
    map,
    id,
    `cannot confirm shard ${id} holds nothing`,
    "bring it up, or stop routing to it and wait",
    // read afresh: a read already under way may have listed its queues before the last task
    { depth: true, fresh: true },
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
      `shard ${id} still holds ${status.queueDepth} tasks (a batch a migration reserved there counts too); move its queues away first`,
    );
  const written = await admin.write(actor, "RemoveShard", `shard ${id}`, (current) => {
    checkRemovable(current, id);
    const draft = draftOf(current);
    const { [id]: _gone, ...shards } = draft.shards;
    return { ...draft, shards };
  });
  return written.version;
}

function checkRemovable(map: ShardMap, id: string): void {
  if (!entry(map.shards, id))
    throw new ServerError(Status.NOT_FOUND, `no shard ${id} in the shard map`);
  if (map.defaultShard === id)
    throw precondition(
      `shard ${id} is the default shard: make another shard the default first (SetDefaultShard), and move the commands pinned to it`,
    );
  if (map.formerDefault === id)
    throw precondition(
      `shard ${id} was the default shard, and the change is not finished: call SetDefaultShard for ${map.defaultShard} again first`,
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

/**
 * RemoveShard of a shard gone for good (its store lost): its worker must not answer,
 * or its store must not. In one change of the map every queue routed to it goes to
 * `reassignTo` (the default shard too), every migration involving it is ended
 * (recorded ABANDONED) with its queue routed to the other side, which keeps what it
 * holds (a batch reserved there for the move is put back there: its mover's
 * `PutBack`, once the lost shard has left the map), and the shard leaves the map.
 */
async function removeLostShard(
  admin: AdminStore,
  routing: Routing,
  id: string,
  reassignTo: string,
  actor: string,
): Promise<number> {
  if (reassignTo === id) throw invalid("reassign_to must be another shard than the one lost");
  if (reassignTo && !SHARD_ID_PATTERN.test(reassignTo))
    throw invalid(`reassign_to must match ${SHARD_ID_PATTERN.source}`);
  const map = await admin.freshMap();
  lostShardProblems(map, id, reassignTo);
  // given up only when it cannot be asked: a shard that answers, its store too, is
  // emptied and removed as usual, its tasks moved first
  const answers = await workerOf(routing, map, id, `shard ${id} does not answer`, "", {
    depth: false,
  }).then(
    () => true,
    (err: unknown) => {
      // this router has not connected to it yet: nothing is known
      if (err instanceof ServerError && err.code === Status.UNAVAILABLE) throw err;
      // another worker at its endpoint: the map's endpoint may be what is wrong, and
      // the shard's store intact
      if (err instanceof NotItsWorker)
        throw precondition(
          `${err.found}: shard ${id}'s own worker cannot be asked; correct its endpoint (RemoveShard, then RegisterShard) or stop that worker, then try again`,
        );
      return false;
    },
  );
  if (answers)
    throw precondition(
      `shard ${id} answers, and so does its store: it is not lost; move its queues away (AssignCommand) and remove it without lost`,
    );
  if (reassignTo) {
    if (entry(map.shards, reassignTo)?.state !== "active")
      throw precondition(`shard ${reassignTo} is draining: it takes no new queues`);
    await servingWorker(
      routing,
      map,
      reassignTo,
      `cannot reassign shard ${id}'s queues to shard ${reassignTo}`,
      "start its worker, or name another shard",
    );
  }
  const ending = map.migrations.filter((m) => isUnfinished(m) && involves(m, id));
  const endingIds = ending.map((m) => m.id).join(", ");
  // recorded before the map changes: GetMigration and a surviving worker's mover (after
  // a restart) find them once the map no longer lists them; while it does, the map wins
  for (const m of ending) await admin.recordAbandoned(m, id);
  const written = await admin.write(
    actor,
    "RemoveShard",
    `shard ${id} removed as lost${reassignTo ? `, its queues to ${reassignTo}` : ""}${endingIds ? `; migrations abandoned: ${endingIds}` : ""}`,
    (current) => {
      lostShardProblems(current, id, reassignTo);
      // what was checked above must still hold: where the shard is, and what it ends
      const changed =
        entry(current.shards, id)?.endpoint !== entry(map.shards, id)?.endpoint ||
        (reassignTo !== "" && entry(current.shards, reassignTo)?.state !== "active");
      const out = withoutLostShard(current, id, reassignTo);
      if (changed || out.abandoned.map((m) => m.id).join(", ") !== endingIds)
        throw new ServerError(
          Status.ABORTED,
          `shard ${id}, or the migrations involving it, changed meanwhile; try again`,
        );
      return out.draft;
    },
  );
  // again, now that they left the map: a mover that finished one meanwhile (it could
  // still reach the shard this router cannot) may have recorded it since
  for (const m of ending) await admin.recordAbandoned(m, id).catch(() => undefined);
  return written.version;
}

const involves = (m: Migration, id: string) => m.from === id || m.to === id;

/** Why shard `id` cannot be removed as lost, queues going to `reassignTo`: thrown. */
function lostShardProblems(map: ShardMap, id: string, reassignTo: string): void {
  if (!entry(map.shards, id))
    throw new ServerError(Status.NOT_FOUND, `no shard ${id} in the shard map`);
  // what would be left routed to nowhere: the queues of the moves it ends go to the
  // other side of each
  const left = withoutLostShard(map, id, "").draft;
  const routed = [
    ...(left.defaultShard === "" ? ["the default shard"] : []),
    ...Object.entries(left.commands)
      .filter(([, s]) => s === "")
      .map(([c]) => `command ${c}`),
    ...Object.entries(left.tenants)
      .filter(([, s]) => s === "")
      .map(([k]) => k),
  ];
  if (routed.length > 0 && !reassignTo)
    throw invalid(
      `reassign_to is required: shard ${id} is ${routed.slice(0, 5).join(", ")}${routed.length > 5 ? ` and ${routed.length - 5} more` : ""}`,
    );
  if (reassignTo && !entry(map.shards, reassignTo))
    throw new ServerError(Status.NOT_FOUND, `no shard ${reassignTo} in the shard map`);
}

/**
 * `map` without shard `id`: what was routed to it goes to `reassignTo`; each unfinished
 * migration involving it is taken out (returned, to record as abandoned), its queue
 * routed to the other side (by an entry of its own unless it follows that shard
 * anyway); finished ones naming it are taken out too.
 */
export function withoutLostShard(
  map: ShardMap,
  id: string,
  reassignTo: string,
): { draft: ShardMapDraft; abandoned: Migration[] } {
  const swap = (shard: string) => (shard === id ? reassignTo : shard);
  const swapAll = (table: Readonly<Record<string, string>>) =>
    Object.fromEntries(Object.entries(table).map(([k, s]) => [k, swap(s)]));
  const { formerDefault, ...base } = draftOf(map);
  const defaultShard = swap(base.defaultShard);
  // a change of the default being finished: over once the former default is lost (what
  // it took is lost with it), or becomes the default again; a new default that is lost
  // is replaced by `reassignTo`, and the former one is still read until it is finished
  const former = formerDefault === undefined ? undefined : swap(formerDefault);
  let draft: ShardMapDraft = {
    ...base,
    defaultShard,
    ...(former !== undefined && former !== defaultShard && formerDefault !== id
      ? { formerDefault: former }
      : {}),
    commands: swapAll(base.commands),
    tenants: swapAll(base.tenants),
  };
  const abandoned = map.migrations.filter((m) => isUnfinished(m) && involves(m, id));
  for (const m of abandoned) {
    const survivor = m.from === id ? m.to : m.from;
    const { inherited } = ownRoute(draft, m.command, m.tenant);
    draft = withOwnRoute(draft, m.command, m.tenant, inherited === survivor ? undefined : survivor);
  }
  const { [id]: _lost, ...shards } = draft.shards;
  const migrations = draft.migrations.filter((m) => !involves(m, id));
  return { draft: { ...draft, shards, migrations }, abandoned };
}
