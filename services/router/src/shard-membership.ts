import { ServerError, Status } from "nice-grpc";
import { ShardState, type Shard } from "@codeq/proto";
import {
  draftOf,
  entry,
  isEndpoint,
  isUnfinished,
  SHARD_ID_PATTERN,
  type ShardMap,
} from "@codeq/shardmap";
import { checkId, invalid, precondition } from "./admin-checks";
import type { AdminStore } from "./admin-store";
import type { Routing } from "./routing";
import { NotItsWorker, workerOf } from "./worker-status";

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

export async function removeShard(
  admin: AdminStore,
  routing: Routing,
  id: string,
  actor: string,
): Promise<number> {
  checkId("id", id, SHARD_ID_PATTERN);
  const map = await admin.freshMap();
  checkRemovable(map, id);
  // a worker whose store does not answer reports a depth of 0: that proves nothing
  const status = await workerOf(
    routing,
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
