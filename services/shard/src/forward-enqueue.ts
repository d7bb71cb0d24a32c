import type { CallContext } from "nice-grpc";
import type { internal } from "@codeq/proto";
import {
  answerConcurrently,
  identityFrom,
  IDENTITY_HEADERS,
  type IdentityOptions,
} from "@codeq/server-kit";
import { NotOwnerError } from "./errors";
import type { QueueCore } from "./queue-core";
import { toServerError } from "./status";

/**
 * Batches one router stream may have in the store at once. A router multiplexes
 * every caller's enqueues to this shard over a few such streams, so this is
 * larger than a producer's EnqueueStream allows; past it the shard stops reading
 * and HTTP/2 flow control holds the router back.
 */
export const FORWARD_IN_FLIGHT = 64;

/**
 * codeq.internal.v1.ShardService.ForwardEnqueue: the enqueues a router forwards,
 * many callers' batches on one long-lived stream. Each message is stored exactly
 * as an EnqueueBatch call with the same identity metadata would be (the same
 * checks, rights and fencing), and answered once by its seq: with the batch's
 * answer, or with the status the call would have ended with (for fencing, with
 * the map version held and the queue's owner, which a call carries in trailers).
 *
 * When the shard worker starts draining, the stream stops reading, answers what
 * it has read and ends; the router fails what it sent after that with
 * UNAVAILABLE, which the caller may retry (with its idempotency key).
 */
export function forwardEnqueue(
  core: QueueCore,
  trust: IdentityOptions,
  draining: AbortSignal,
  requests: AsyncIterable<internal.ForwardEnqueueRequest>,
  ctx: CallContext,
): AsyncGenerator<internal.ForwardEnqueueResponse> {
  const secret = ctx.metadata.get(IDENTITY_HEADERS.routerSecret);
  return answerConcurrently<internal.ForwardEnqueueRequest, internal.ForwardEnqueueResponse>(
    until(requests, draining),
    async (req) => {
      // what the identity metadata of a QueueService call would say, the secret
      // being the one the stream was opened with
      const stated = (key: string): string | undefined => {
        switch (key) {
          case IDENTITY_HEADERS.tenant:
            return req.tenant;
          case IDENTITY_HEADERS.principal:
            return req.principal;
          case IDENTITY_HEADERS.roles:
            return req.roles;
          case IDENTITY_HEADERS.routerSecret:
            return secret;
          default:
            return undefined;
        }
      };
      const identity = identityFrom({ get: stated }, trust);
      const results = await core.enqueue(identity, req.tasks, req.mapVersion);
      return { seq: req.seq, answer: { results }, error: undefined, mapVersion: 0, owner: "" };
    },
    (req, err) => {
      const e = toServerError(err);
      const fenced = err instanceof NotOwnerError ? err : undefined;
      return {
        seq: req.seq,
        answer: undefined,
        error: { code: e.code, message: e.details },
        mapVersion: fenced?.mapVersion ?? 0,
        owner: fenced?.owner ?? "",
      };
    },
    FORWARD_IN_FLIGHT,
  );
}

/** `source` until `signal` aborts (a read in progress then ends the iteration). */
async function* until<T>(source: AsyncIterable<T>, signal: AbortSignal): AsyncGenerator<T> {
  if (signal.aborted) return;
  const it = source[Symbol.asyncIterator]();
  let stop = () => undefined as void;
  const stopped = new Promise<IteratorResult<T>>((resolve) => {
    stop = () => resolve({ done: true, value: undefined });
    signal.addEventListener("abort", stop, { once: true });
  });
  try {
    for (;;) {
      const next = await Promise.race([it.next(), stopped]);
      if (next.done) return;
      yield next.value;
    }
  } finally {
    signal.removeEventListener("abort", stop);
  }
}
