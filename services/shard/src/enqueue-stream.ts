import type { EnqueueStreamRequest, EnqueueStreamResponse } from "@codeq/proto";
import { answerConcurrently, type Identity } from "@codeq/server-kit";
import { failedEnqueueResults } from "@codeq/wire";
import type { QueueCore } from "./queue-core";
import { shuttingDown, toServerError } from "./status";

/**
 * The high-rate producer path: every batch is answered once, by its seq, with
 * per-item results; up to 16 batches are stored concurrently, so answers may come
 * out of order. A bad batch is answered with its error on every item and the stream
 * goes on; so is a batch refused by fencing (UNAVAILABLE, naming the owner and the
 * map version: a stream has no trailers per batch). The stream ends once the
 * producer half-closes and every batch is answered.
 *
 * When the shard worker starts draining (`draining`), it reads no further batch:
 * those already read are answered, then the stream ends with UNAVAILABLE. A batch
 * without an answer was not stored; the producer sends it again elsewhere or later.
 */
export function enqueueStream(
  core: QueueCore,
  identity: Identity,
  requests: AsyncIterable<EnqueueStreamRequest>,
  draining: AbortSignal,
  seenMapVersion = 0,
): AsyncGenerator<EnqueueStreamResponse> {
  return answerConcurrently(
    requests,
    async (req) => ({
      seq: req.seq,
      results: await core.enqueue(identity, req.tasks, seenMapVersion),
    }),
    (req, err) => {
      const e = toServerError(err);
      return {
        seq: req.seq,
        results: failedEnqueueResults(req.tasks.length, { code: e.code, message: e.details }),
      };
    },
    { stopReading: { signal: draining, error: shuttingDown } },
  );
}
