import { ServerError, Status } from "nice-grpc";
import type { internal } from "@codeq/proto";
import { entry, sharesEndpoint, type ShardMap } from "@codeq/shardmap";
import { precondition } from "./admin-checks";
import type { Routing } from "./routing";

/** What the router's admin calls ask a shard's own worker: its status, and the queues it holds. */

/** The worker at a shard's endpoint answers as another shard (`workerOf`). */
export class NotItsWorker extends ServerError {
  constructor(
    /** What was found, for a caller that words its own message. */
    readonly found: string,
    details: string,
  ) {
    super(Status.FAILED_PRECONDITION, details);
  }
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
export async function workerOf(
  routing: Routing,
  map: ShardMap,
  id: string,
  cannot: string,
  remedy: string,
  wants: { readonly depth: boolean; readonly fresh?: boolean; readonly signal?: AbortSignal },
): Promise<internal.GetShardStatusResponse> {
  const { signal } = wants;
  if (!routing.pool.has(id) || routing.pool.get(id).endpoint !== entry(map.shards, id)?.endpoint)
    throw new ServerError(
      Status.UNAVAILABLE,
      `this router has not connected to shard ${id} yet (its map is at version ${routing.map.version}, the control store's at ${map.version}); try again in a moment`,
    );
  const status = await routing.pool
    .get(id)
    .internal.getShardStatus(
      { withoutDepth: !wants.depth, fresh: wants.fresh ?? false },
      { deadline: new Date(Date.now() + routing.config.fanoutTimeoutMs), signal },
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

/**
 * As `workerOf`, without the depth, and refused (FAILED_PRECONDITION) unless the worker
 * serves: one starting or shutting down is no place to send a queue's enqueues now.
 */
export async function servingWorker(
  routing: Routing,
  map: ShardMap,
  id: string,
  cannot: string,
  remedy: string,
  signal?: AbortSignal,
): Promise<internal.GetShardStatusResponse> {
  const status = await workerOf(routing, map, id, cannot, remedy, { depth: false, signal });
  if (status.lifecycle && status.lifecycle !== "serving")
    throw precondition(`${cannot}: its worker is ${status.lifecycle}; try again once it serves`);
  return status;
}

/**
 * Every queue of `command` shard `shard` holds (only `tenant`'s when set), with its
 * counts, page by page; each page within the fan-out timeout.
 */
export async function queuesOn(
  routing: Routing,
  shard: string,
  command: string,
  tenant = "",
  signal?: AbortSignal,
): Promise<internal.QueueSummary[]> {
  const conn = routing.pool.get(shard);
  const queues: internal.QueueSummary[] = [];
  let pageToken = "";
  do {
    const page = await conn.internal.listQueues(
      { command, tenant, pageSize: 1000, pageToken },
      { deadline: new Date(Date.now() + routing.config.fanoutTimeoutMs), signal },
    );
    queues.push(...page.queues);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return queues;
}
