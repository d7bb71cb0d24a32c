import { Channel } from "./channel";

/**
 * Serves a request stream whose every message gets exactly one answer: up to
 * `inFlight` messages are handled at once, answers are yielded as they complete
 * (so possibly out of order; callers tag them), a failed message is answered by
 * `onError` and the stream goes on. The stream ends once the caller half-closes
 * and every message is answered; a broken request stream fails it. With
 * `announce`, its message goes out once, between answers, when its signal aborts.
 */
export async function* answerConcurrently<Req, Res>(
  requests: AsyncIterable<Req>,
  handle: (req: Req) => Promise<Res>,
  onError: (req: Req, err: unknown) => Res,
  inFlight = 16,
  announce?: { readonly signal: AbortSignal; readonly message: Res },
): AsyncGenerator<Res> {
  const out = new Channel<Res>();
  const announced = () => out.push(announce!.message);
  if (announce?.signal.aborted) announced();
  else announce?.signal.addEventListener("abort", announced, { once: true });
  let running = 0;
  let slot: (() => void) | undefined;
  let doneReading = false;
  const finishOne = () => {
    running--;
    slot?.();
    slot = undefined;
    if (doneReading && running === 0) out.close();
  };
  const reading = (async () => {
    try {
      for await (const req of requests) {
        while (running >= inFlight) await new Promise<void>((r) => (slot = r));
        running++;
        handle(req)
          .then(
            (res) => out.push(res),
            (err: unknown) => out.push(onError(req, err)),
          )
          .finally(finishOne);
      }
    } catch (err) {
      out.fail(err);
      return;
    }
    doneReading = true;
    if (running === 0) out.close();
  })();
  try {
    yield* out;
  } finally {
    announce?.signal.removeEventListener("abort", announced);
    await reading;
  }
}
