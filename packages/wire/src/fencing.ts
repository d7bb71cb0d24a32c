/**
 * Fencing (SPEC §4): a shard worker refuses an enqueue for a queue it does not own
 * under the shard map it holds, with UNAVAILABLE and these trailers; a router reads
 * them, refreshes its map and retries once. A router also sends its map version in
 * request metadata under MAP_VERSION_TRAILER, so a shard behind it re-reads first.
 */

/** The shard map version the refusing shard holds (and, on requests, the caller's). */
export const MAP_VERSION_TRAILER = "x-codeq-map-version";
/** The shard that owns the refused queue under that version. */
export const OWNER_TRAILER = "x-codeq-owner";
