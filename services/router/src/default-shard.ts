import { setTimeout as sleep } from "node:timers/promises";
import { ServerError, Status } from "nice-grpc";
import type { SetDefaultShardResponse } from "@codeq/proto";
import { messageOf } from "@codeq/common";
import {
  draftOf,
  entry,
  finishDefaultChange as finishedChange,
  finishedDefaultSummary,
  formerDefaultActor,
  isUnfinished,
  SHARD_ID_PATTERN,
  type Migration,
  type ShardMap,
} from "@codeq/shardmap";
import { checkId, precondition } from "./admin-checks";
import type { AdminStore } from "./admin-store";
import { migrationToWire } from "./admin-wire";
import { twinOf } from "./assign-command";
import type { Routing } from "./routing";
import { servingWorker, workerOf } from "./worker-status";

/** How long SetDefaultShard waits for the former default's worker to hold the new map, ms. */
const CONFIRM_WAIT_MS = 5_000;
const CONFIRM_POLL_MS = 50;
/** Reads of what the former default holds, at most, before the change is left unfinished. */
const HELD_READS = 3;

/** SetDefaultShard's request, as the router reads it. */
export interface DefaultShardAsk {
  readonly shard: string;
  readonly dryRun?: boolean;
}

/**
 * Makes `req.shard` the default shard. The queues the current default holds stay
 * there: every command of which it keeps tasks and that follows the default is mapped
 * to it in the same change, so the change routes only commands it holds nothing of to
 * the new default. Until its worker has the new map, the former default may still take
 * the first tasks of a command new to it (routers send them there until they have the
 * map, and its fencing does not refuse them until it has): so the change also records
 * it as `formerDefault`, read for every queue that follows the default, and nothing it
 * takes is out of reach. The change is then finished (`finishDefaultChange`): once its
 * worker confirms the map, each command it took meanwhile is moved to the new default,
 * and `formerDefault` is cleared. What is not finished now (the worker does not confirm
 * in time, its store does not answer) is finished by the former default's worker on its
 * own (DefaultChangeFinisher, services/shard) or by the same call sent again; another
 * change of the default, or an assignment, waits for it.
 */
export async function setDefaultShard(
  admin: AdminStore,
  routing: Routing,
  req: DefaultShardAsk,
  actor: string,
  signal?: AbortSignal,
): Promise<SetDefaultShardResponse> {
  checkId("shard", req.shard, SHARD_ID_PATTERN);
  const map = await admin.freshMap();
  const previous = map.defaultShard;
  const pending = map.formerDefault;
  if (pending !== undefined) {
    if (req.shard !== previous)
      throw precondition(
        `the change of the default shard from ${pending} to ${previous} is not finished: call SetDefaultShard for ${previous} again to finish it first`,
      );
    if (req.dryRun)
      return {
        mapVersion: map.version,
        previous: pending,
        pinned: [],
        migrations: [],
        finished: false,
      };
    return {
      previous: pending,
      pinned: [],
      ...(await finishDefaultChange(admin, routing, pending, actor)),
    };
  }
  checkDefaultable(map, req.shard);
  const unchanged = { mapVersion: map.version, previous, pinned: [], migrations: [] };
  if (previous === req.shard) return { ...unchanged, finished: true };
  const cannot = `cannot make shard ${req.shard} the default`;
  await servingWorker(
    routing,
    map,
    req.shard,
    cannot,
    "start its worker, or correct its endpoint in the map (RemoveShard, then RegisterShard)",
    signal,
  );
  const held = await commandsHeld(
    routing,
    map,
    previous,
    `${cannot}: the current default, shard ${previous}, must say which commands it holds, so that their queues stay there`,
    signal,
  );
  const pins = pinsOf(map, held);
  if (req.dryRun) return { ...unchanged, pinned: pins, finished: false };
  await admin.write(
    actor,
    "SetDefaultShard",
    `default shard ${previous} → ${req.shard}${pins.length ? `; ${pins.join(", ")} stay on ${previous}` : ""}`,
    (current) => {
      if (signal?.aborted)
        throw new ServerError(
          Status.CANCELLED,
          "the caller went away before the change was written; nothing changed",
        );
      checkDefaultable(current, req.shard);
      if (
        current.defaultShard !== previous ||
        current.formerDefault !== undefined ||
        pinsOf(current, held).join() !== pins.join()
      )
        throw new ServerError(
          Status.ABORTED,
          "the default shard or the command mappings changed meanwhile; look at the map again",
        );
      const draft = draftOf(current);
      const commands = { ...draft.commands };
      for (const c of pins) commands[c] = previous;
      return { ...draft, defaultShard: req.shard, formerDefault: previous, commands };
    },
  );
  // written: the rest goes on if the caller leaves (it would only be finished later)
  return {
    previous,
    pinned: pins,
    ...(await finishDefaultChange(admin, routing, previous, actor)),
  };
}

/**
 * Finishes a change of the default shard from `former`: waits (at most CONFIRM_WAIT_MS)
 * for its worker to hold the map that changed it, reads afresh which commands it holds
 * (its fencing refuses the default's enqueues from then on, so nothing is added after),
 * and in one change moves each that now follows the new default onto it (a migration,
 * as AssignCommand starts) and clears `formerDefault`. Unfinished (`finished` false)
 * when the worker does not confirm in time or cannot say what it holds: `former` stays
 * read for the default's queues meanwhile.
 */
async function finishDefaultChange(
  admin: AdminStore,
  routing: Routing,
  former: string,
  actor: string,
): Promise<Pick<SetDefaultShardResponse, "mapVersion" | "migrations" | "finished">> {
  const map = await admin.freshMap().catch(() => undefined);
  if (!map) return { mapVersion: routing.map.version, migrations: [], finished: false };
  const unfinished = { mapVersion: map.version, migrations: [], finished: false };
  const cannot = `cannot finish the change of the default shard from ${former}`;
  const remedy = "call SetDefaultShard again once its worker answers";
  const until = Date.now() + CONFIRM_WAIT_MS;
  let confirmed = false;
  while (!confirmed && Date.now() < until) {
    const status = await workerOf(routing, map, former, cannot, remedy, { depth: false }).catch(
      () => undefined,
    );
    confirmed = (status?.mapVersion ?? 0) >= map.version;
    if (!confirmed) await sleep(CONFIRM_POLL_MS);
  }
  if (!confirmed) {
    routing.logger.error(
      { shard: former, mapVersion: map.version },
      "SetDefaultShard: the former default's worker did not confirm the new map; it stays read for the queues that follow the default until the change is finished (its worker finishes it on its own once it has the map; SetDefaultShard again finishes it at once)",
    );
    return unfinished;
  }
  let held: string[] | undefined;
  for (let i = 0; i < HELD_READS && held === undefined; i++)
    held = await commandsHeld(routing, map, former, cannot).catch((err: unknown) => {
      routing.logger.warn({ shard: former, err: messageOf(err) }, "SetDefaultShard: read again");
      return undefined;
    });
  if (held === undefined) return unfinished;
  const heldNow = held;
  let started: Migration[] = [];
  const written = await admin
    .write(actor, "SetDefaultShard", finishedDefaultSummary(former), (current) => {
      const finished = finishedChange(current, former, heldNow, actor);
      if (!finished) throw new ServerError(Status.ABORTED, "the change was finished meanwhile");
      started = finished.started;
      return finished.draft;
    })
    .catch((err: unknown) => {
      if (!(err instanceof ServerError && err.code === Status.ABORTED))
        routing.logger.warn(
          { shard: former, err: messageOf(err) },
          "SetDefaultShard: not finished",
        );
      return undefined;
    });
  if (!written) {
    // finished meanwhile: by the former default's worker (the moves it started are this
    // change's), by the same call sent twice, or the former default removed as lost
    const now = await admin.freshMap().catch(() => undefined);
    if (now && now.formerDefault !== former)
      return {
        mapVersion: now.version,
        migrations: now.migrations
          .filter(
            (m) =>
              isUnfinished(m) && m.from === former && m.requestedBy === formerDefaultActor(former),
          )
          .map((m) => migrationToWire(m)),
        finished: true,
      };
    return unfinished;
  }
  return {
    mapVersion: written.version,
    migrations: started.map((m) => migrationToWire(m)),
    finished: true,
  };
}

/**
 * Refuses a shard that cannot be the default: unknown (NOT_FOUND), not ACTIVE, sharing
 * its endpoint with another, or any migration unfinished (a move of a command that
 * follows the default would change its route under it).
 */
function checkDefaultable(map: ShardMap, shard: string): void {
  const target = entry(map.shards, shard);
  if (!target) throw new ServerError(Status.NOT_FOUND, `no shard ${shard} in the shard map`);
  if (map.defaultShard === shard) return;
  if (target.state !== "active")
    throw precondition(
      `shard ${shard} is ${target.state}; only an active shard takes new queues (SetShardState)`,
    );
  const twin = twinOf(map, shard);
  if (twin)
    throw precondition(
      `shard ${shard} shares its endpoint with shard ${twin}: remove the name its worker does not answer to first (RemoveShard)`,
    );
  const running = map.migrations.find(isUnfinished);
  if (running)
    throw precondition(
      `migration ${running.id} (${running.from} → ${running.to}) is ${running.state}; the default shard changes once no migration is unfinished: wait for it or abort it`,
    );
}

/** The commands of `held` whose queues follow the default shard (no mapping of their own). */
function pinsOf(map: ShardMap, held: readonly string[]): string[] {
  return held.filter((c) => entry(map.commands, c) === undefined);
}

/**
 * The commands of which shard `id` keeps tasks, as its worker says, read afresh (a
 * read already under way may have listed its queues before the last task came).
 */
async function commandsHeld(
  routing: Routing,
  map: ShardMap,
  id: string,
  cannot: string,
  signal?: AbortSignal,
): Promise<string[]> {
  const status = await workerOf(
    routing,
    map,
    id,
    cannot,
    "bring its worker back first (a shard lost for good: RemoveShard with lost)",
    { depth: true, fresh: true, signal },
  );
  // a worker that predates `fresh` may answer from a read begun before the last task
  if (!status.freshRead)
    throw precondition(`${cannot}, and its worker is too old to say: upgrade it first`);
  return status.commands;
}
