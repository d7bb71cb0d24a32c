import type { QueueEngine, QueueRef } from "@codeq/engine";
import { movesTenant, type Migration, type ShardMap } from "@codeq/shardmap";
import type { PeerCall, PeerClient } from "./peers";

/** Idempotency keys bound per ImportTasks call. */
const KEY_PAGE = 1000;

/**
 * Tasks of `m`'s queues the other side (its filling side, `client`) holds reserved to
 * move here: a batch whose import was on its way when the move was aborted.
 */
export async function reservedThere(
  client: PeerClient,
  m: Migration,
  map: () => ShardMap,
  call: PeerCall,
): Promise<number> {
  let reserved = 0;
  let pageToken = "";
  do {
    const page = await client.listQueues(
      { command: m.command, tenant: m.tenant ?? "", pageToken },
      call(),
    );
    const now = map();
    for (const q of page.queues) if (movesTenant(now, m, q.tenant)) reserved += q.moving;
    pageToken = page.nextPageToken;
  } while (pageToken);
  return reserved;
}

/**
 * Binds every live idempotency key of `queues` (on `engine`'s shard) on the other side
 * of `m` (`client`); returns how many it bound there.
 */
export async function bindKeys(
  client: PeerClient,
  engine: QueueEngine,
  m: Migration,
  queues: readonly QueueRef[],
  call: PeerCall,
): Promise<number> {
  let bound = 0;
  for (const q of queues) {
    let after: number | undefined;
    do {
      const page = await engine.idempotencyBindings(q, after, KEY_PAGE);
      after = page.next;
      // a page may hold more than a call takes (keys sharing its last expiry)
      for (let at = 0; at < page.bindings.length; at += KEY_PAGE) {
        const res = await client.importTasks(
          {
            command: q.command,
            tenant: q.tenant,
            migrationId: m.id,
            tasks: [],
            idempotencyKeys: page.bindings.slice(at, at + KEY_PAGE).map((b) => ({
              key: b.key,
              taskId: b.taskId,
              expiresAtMs: b.expiresAt,
            })),
          },
          call(),
        );
        bound += res.keysBound;
      }
    } while (after !== undefined);
  }
  return bound;
}
