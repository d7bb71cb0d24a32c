import { ServerError, Status } from "nice-grpc";
import { messageOf } from "@codeq/common";
import { CALLER_CODES } from "@codeq/server-kit";
import type { Routing } from "./routing";
import type { ShardConn } from "./shard-pool";

export interface FanOut<T> {
  /** Answers, in the order the shards were given. */
  readonly answers: { readonly shard: string; readonly value: T }[];
  /** Shards that failed or did not answer in time, with why. */
  readonly failed: { readonly shard: string; readonly error: ServerError }[];
}

/**
 * Calls `fn` on every shard in parallel, each bounded by `timeoutMs` (its own
 * deadline), and collects what came back. A read that fails for a reason of the
 * shard's is retried once within the deadline (reads are safe to repeat) unless the
 * breaker is open; `retry: false` for a call that is not a read.
 */
export async function fanOut<T>(
  routing: Routing,
  shards: readonly string[],
  fn: (conn: ShardConn, deadline: Date) => Promise<T>,
  timeoutMs = routing.config.fanoutTimeoutMs,
  retry = true,
): Promise<FanOut<T>> {
  const deadline = Date.now() + timeoutMs;
  const settled = await Promise.all(
    shards.map(async (shard) => {
      try {
        const conn = routing.pool.get(shard);
        const once = () => conn.call((c) => fn(c, new Date(deadline)));
        const value = await once().catch((err: unknown) => {
          if (!retry || !retryable(err) || Date.now() >= deadline || conn.breakerState === "open")
            throw err;
          return once();
        });
        return { shard, value, error: undefined };
      } catch (err) {
        return { shard, error: asServerError(err) };
      }
    }),
  );
  const answers: FanOut<T>["answers"] = [];
  const failed: FanOut<T>["failed"] = [];
  for (const s of settled) {
    if (s.error) failed.push({ shard: s.shard, error: s.error });
    else answers.push({ shard: s.shard, value: s.value as T });
  }
  return { answers, failed };
}

function retryable(err: unknown): boolean {
  return err instanceof ServerError && err.code === Status.UNAVAILABLE;
}

/** How a stream the router ends at shutdown ends: the caller reconnects. */
export function routerShuttingDown(): ServerError {
  return new ServerError(Status.UNAVAILABLE, "the router is shutting down; reconnect");
}

export function asServerError(err: unknown): ServerError {
  if (err instanceof ServerError) return err;
  if ((err as Error | undefined)?.name === "AbortError")
    return new ServerError(Status.CANCELLED, "the call was cancelled");
  return new ServerError(Status.UNAVAILABLE, messageOf(err));
}

/** Throws the first answer that is about the request itself (bad input, rights). */
export function throwCallerError(failed: readonly { error: ServerError }[]): void {
  const own = failed.find((f) => CALLER_CODES.has(f.error.code));
  if (own) throw own.error;
}

/** The error for a fan-out where no shard answered: the first failure, naming them all. */
export function noneAnswered(failed: FanOut<unknown>["failed"]): ServerError {
  const first = failed[0]?.error;
  const names = failed.map((f) => f.shard).join(", ");
  return new ServerError(
    first?.code ?? Status.UNAVAILABLE,
    `no shard answered (${names}): ${first?.details ?? "unavailable"}`,
  );
}
