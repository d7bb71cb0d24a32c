/**
 * The shard worker's typed errors. Engine refusals are the engine's `EngineError`;
 * what is the worker's own is here. `toServerError` (status.ts) maps each to the
 * gRPC status a client sees.
 */

export { MAP_VERSION_TRAILER, OWNER_TRAILER } from "@codeq/wire";

/**
 * An enqueue for a queue this shard does not own under the shard map it holds.
 * Retryable: the caller refreshes its map and sends the request to `owner`.
 */
export class NotOwnerError extends Error {
  override readonly name = "NotOwnerError";

  constructor(
    /** This shard. */
    readonly shard: string,
    readonly command: string,
    readonly tenant: string,
    /** The current shard of the queue under `mapVersion`. */
    readonly owner: string,
    /** The shard map version this shard holds. */
    readonly mapVersion: number,
    /** Other queues of the same request this shard does not own either. */
    readonly alsoRefused = 0,
  ) {
    const more = alsoRefused > 0 ? ` (and ${alsoRefused} more queue(s) of this request)` : "";
    super(
      `shard ${shard} does not own queue ${command} for tenant ${tenant} under shard map version ${mapVersion} (owner: ${owner})${more}; refresh the shard map and retry`,
    );
  }
}
