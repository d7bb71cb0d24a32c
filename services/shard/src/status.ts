import { ServerError, Status } from "nice-grpc";
import { EngineError } from "@codeq/engine";

/** Turns anything an engine call threw into the ServerError a client should see. */
export function toServerError(err: unknown): ServerError {
  if (err instanceof ServerError) return err;
  if (err instanceof EngineError) return new ServerError(err.status, err.message);
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

export function invalid(message: string): ServerError {
  return new ServerError(Status.INVALID_ARGUMENT, message);
}
