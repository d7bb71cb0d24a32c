import { setTimeout as sleep } from "node:timers/promises";
import { ServerError, Status } from "nice-grpc";
import type { SetDefaultShardResponse } from "@codeq/proto";
import {
  currentShardOf,
  draftOf,
  entry,
  isUnfinished,
  SHARD_ID_PATTERN,
  type Migration,
  type ShardMap,
} from "@codeq/shardmap";
import { checkId, precondition } from "./admin-checks";
import type { AdminStore } from "./admin-store";
import { migrationToWire } from "./admin-wire";
import { newMigrationId, twinOf } from "./assign-command";
import type { Routing } from "./routing";
import { servingWorker, workerOf } from "./worker-status";

/** How long SetDefaultShard waits for the former default's worker to hold the new map, ms. */
const CONFIRM_WAIT_MS = 10_000;
const CONFIRM_POLL_MS = 50;

/** SetDefaultShard's request, as the router reads it. */
export interface DefaultShardAsk {
  readonly shard: string;
  readonly dryRun?: boolean;
}

/**
 * Makes `req.shard` the default shard. The queues the current default holds stay
 * there: every command of which it stores tasks and that follows the default is
 * mapped to it in the same change, so the change routes only commands it holds
 * nothing of to the new default. An enqueue of a command new to the former default
 * may still reach it before its worker has the new map (its fencing then refuses
 * such enqueues): once it has, what it holds is looked at again, and a command
 * found there that now follows the new default is moved onto it (a migration, as
 * AssignCommand would start), so no task is left where no router reads it.
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
  checkDefaultable(map, req.shard);
  const unchanged = { mapVersion: map.version, previous, pinned: [], migrations: [] };
  if (previous === req.shard) return { ...unchanged, formerDefaultConfirmed: true };
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
  if (req.dryRun) return { ...unchanged, pinned: pins, formerDefaultConfirmed: false };
  const written = await admin.write(
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
      if (current.defaultShard !== previous || pinsOf(current, held).join() !== pins.join())
        throw new ServerError(
          Status.ABORTED,
          "the default shard or the command mappings changed meanwhile; look at the map again",
        );
      const draft = draftOf(current);
      const commands = { ...draft.commands };
      for (const c of pins) commands[c] = previous;
      return { ...draft, defaultShard: req.shard, commands };
    },
  );
  const { confirmed, moves } = await moveStrays(admin, routing, written, previous, actor, signal);
  return {
    mapVersion: moves?.version ?? written.version,
    previous,
    pinned: pins,
    migrations: (moves?.migrations ?? [])
      .filter((m) => m.mapVersion === moves?.version && m.from === previous)
      .map((m) => migrationToWire(m)),
    formerDefaultConfirmed: confirmed,
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

/** The commands of which shard `id` stores tasks, as its worker says. */
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
    { depth: true, signal },
  );
  if (status.queueDepth > 0 && status.commands.length === 0)
    throw precondition(`${cannot}, and its worker is too old to say: upgrade it first`);
  return status.commands;
}

/**
 * After the change: waits (at most CONFIRM_WAIT_MS) for the former default's worker to
 * hold the new map, then moves onto the new default any command it holds that now
 * follows the new default (tasks enqueued there before its worker had the map).
 */
async function moveStrays(
  admin: AdminStore,
  routing: Routing,
  written: ShardMap,
  former: string,
  actor: string,
  signal?: AbortSignal,
): Promise<{ confirmed: boolean; moves?: ShardMap }> {
  const cannot = `cannot look for the tasks shard ${former} took while the change spread`;
  const remedy = "its queues follow the map as it is";
  const until = Date.now() + CONFIRM_WAIT_MS;
  let confirmed = false;
  while (!confirmed && Date.now() < until && !signal?.aborted) {
    const status = await workerOf(routing, written, former, cannot, remedy, {
      depth: false,
      signal,
    }).catch(() => undefined);
    confirmed = (status?.mapVersion ?? 0) >= written.version;
    if (!confirmed) await sleep(CONFIRM_POLL_MS);
  }
  if (!confirmed)
    routing.logger.error(
      { shard: former, mapVersion: written.version },
      "SetDefaultShard: the former default's worker did not confirm the new map; enqueues of commands new to it may have reached it meanwhile (docs/migration.md, Changing the default shard)",
    );
  const map = await admin.freshMap();
  const held = await commandsHeld(routing, map, former, cannot, signal).catch(() => []);
  const strays = held.filter((c) => strayOf(map, c, former));
  if (strays.length === 0) return { confirmed };
  const moves = await admin.write(
    actor,
    "SetDefaultShard",
    `${strays.join(", ")}: ${former} → ${map.defaultShard} (enqueued on ${former} while the default shard changed)`,
    (current) => {
      const now = strays.filter((c) => strayOf(current, c, former));
      if (now.length === 0) return undefined;
      const started = now.map((command): Migration => ({
        id: newMigrationId(),
        command,
        from: former,
        to: current.defaultShard,
        state: "copying",
        startedAtMs: Date.now(),
        requestedBy: actor,
        hadOwnRoute: false,
        mapVersion: current.version + 1,
      }));
      const draft = draftOf(current);
      return { ...draft, migrations: [...draft.migrations, ...started] };
    },
  );
  return { confirmed, moves };
}

/**
 * Whether `command`, of which shard `former` holds tasks, now follows another shard by
 * default (no mapping of its own) with no move of it unfinished.
 */
function strayOf(map: ShardMap, command: string, former: string): boolean {
  return (
    entry(map.commands, command) === undefined &&
    currentShardOf(map, command) !== former &&
    !map.migrations.some((m) => isUnfinished(m) && m.command === command)
  );
}
