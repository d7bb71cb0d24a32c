import { ServerError, Status, type CallContext } from "nice-grpc";
import { EngineError } from "@codeq/engine";
import { MAP_VERSION_TRAILER, NotOwnerError, OWNER_TRAILER } from "./errors";

/** Turns anything an engine call threw into the ServerError a client should see. */
export function toServerError(err: unknown): ServerError {
  if (err instanceof ServerError) return err;
  if (err instanceof EngineError) return new ServerError(err.status, err.message);
  // Retryable once the caller has a newer map: UNAVAILABLE, as SPEC §4 asks.
  if (err instanceof NotOwnerError) return new ServerError(Status.UNAVAILABLE, err.message);
  // The store or the connection failed: the caller may retry (with the same idempotency key).
  const detail = err instanceof Error ? err.message : String(err);
  return new ServerError(Status.UNAVAILABLE, `shard store unavailable: ${detail}`);
}

/** Runs `fn`, rethrowing its failure as a ServerError. */
export async function asServerErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toServerError(err);
  }
}

/**
 * Runs an enqueue; a fencing refusal becomes UNAVAILABLE with the trailers
 * `x-codeq-map-version` (the version this shard holds) and `x-codeq-owner` (the
 * queue's owner under it), so a router can tell a stale map from a failing shard.
 */
export async function withFencingTrailers<T>(ctx: CallContext, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof NotOwnerError) {
      ctx.trailer.set(MAP_VERSION_TRAILER, String(err.mapVersion));
      ctx.trailer.set(OWNER_TRAILER, err.owner);
    }
    throw toServerError(err);
  }
}

/**
 * The shard map version the caller routed by (`x-codeq-map-version`, set by routers);
 * 0 when absent or not a version.
 */
export function seenMapVersion(ctx: CallContext): number {
  const raw = ctx.metadata.get(MAP_VERSION_TRAILER);
  const version = typeof raw === "string" ? Number(raw) : NaN;
  return Number.isSafeInteger(version) && version > 0 ? version : 0;
}

export function invalid(message: string): ServerError {
  return new ServerError(Status.INVALID_ARGUMENT, message);
}

/** How a stream the shard worker ends at shutdown ends: the caller reconnects. */
export function shuttingDown(): ServerError {
  return new ServerError(Status.UNAVAILABLE, "the shard worker is shutting down; reconnect");
}
