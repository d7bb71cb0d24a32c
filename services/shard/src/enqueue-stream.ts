import type { EnqueueStreamRequest, EnqueueStreamResponse } from "@codeq/proto";
import { Channel } from "./channel";
import type { Identity } from "@codeq/server-kit";
import type { QueueCore } from "./queue-core";
import { toServerError } from "./status";

/** Batches of one stream stored at once, at most. */
const IN_FLIGHT = 16;

/**
 * The high-rate producer path: every batch is answered once, by its seq, with
 * per-item results; up to 16 batches are stored concurrently, so answers may come
 * out of order. A bad batch is answered with its error on every item and the stream
 * goes on; so is a batch refused by fencing (UNAVAILABLE, naming the owner and the
 * map version: a stream has no trailers per batch). The stream ends once the producer half-closes and every batch is answered.
 */
export async function* enqueueStream(
  core: QueueCore,
  identity: Identity,
  requests: AsyncIterable<EnqueueStreamRequest>,
  seenMapVersion = 0,
): AsyncGenerator<EnqueueStreamResponse> {
  const out = new Channel<EnqueueStreamResponse>();
  let inFlight = 0;
  let slot: (() => void) | undefined;
  let doneReading = false;
  const finishOne = () => {
    inFlight--;
    slot?.();
    slot = undefined;
    if (doneReading && inFlight === 0) out.close();
  };
  const reading = (async () => {
    try {
      for await (const req of requests) {
        while (inFlight >= IN_FLIGHT) await new Promise<void>((r) => (slot = r));
        inFlight++;
        core
          .enqueue(identity, req.tasks, seenMapVersion)
          .then(
            (results) => out.push({ seq: req.seq, results }),
            (err: unknown) => {
              const e = toServerError(err);
              const status = { code: e.code, message: e.details };
              out.push({
                seq: req.seq,
                results: req.tasks.map(() => ({ status, taskId: "", duplicate: false, state: 0 })),
              });
            },
          )
          .finally(finishOne);
      }
    } catch (err) {
      out.fail(toServerError(err));
      return;
    }
    doneReading = true;
    if (inFlight === 0) out.close();
  })();
  try {
    yield* out;
  } finally {
    await reading;
  }
}
