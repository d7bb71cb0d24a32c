import { Channel } from "./channel";

export interface AnswerOptions<Res> {
  /** Messages handled at once (default 16). */
  readonly inFlight?: number;
  /** Its message goes out once, between answers, when its signal aborts. */
  readonly announce?: { readonly signal: AbortSignal; readonly message: Res };
  /**
   * When its signal aborts (the service drains), no further message is read: those
   * already read are answered, then the stream fails with `error()`. A message the
   * caller sent that has no answer was not handled.
   */
  readonly stopReading?: { readonly signal: AbortSignal; readonly error: () => unknown };
  /**
   * Told of each answer that will never be sent: the call ended (the caller left, its
   * connection broke) before it was taken, or while its message was still being
   * handled. What it carries may need undoing (leases).
   */
  readonly onUnsent?: (res: Res) => void;
}

const STOPPED = Symbol("stopped reading");

/**
 * Serves a request stream whose every message gets exactly one answer: up to
 * `inFlight` messages are handled at once, answers are yielded as they complete
 * (so possibly out of order; callers tag them), a failed message is answered by
 * `onError` and the stream goes on. The stream ends once the caller half-closes
 * and every message is answered; a broken request stream fails it, once every message
 * read before the break is answered.
 *
 * A message holds its slot until its answer has been taken by whoever reads this
 * stream (the transport, which waits while the caller reads nothing): a caller that
 * sends without reading the answers stops being read after `inFlight` messages, and
 * its answers do not pile up in memory.
 */
export async function* answerConcurrently<Req, Res>(
  requests: AsyncIterable<Req>,
  handle: (req: Req) => Promise<Res>,
  onError: (req: Req, err: unknown) => Res,
  { inFlight = 16, announce, stopReading, onUnsent }: AnswerOptions<Res> = {},
): AsyncGenerator<Res> {
  // counted: an answer, which frees its message's slot once taken
  const out = new Channel<{ readonly res: Res; readonly counted: boolean }>();
  const announced = () => out.push({ res: announce!.message, counted: false });
  if (announce?.signal.aborted) announced();
  else announce?.signal.addEventListener("abort", announced, { once: true });
  // the read waiting for the next message, woken early when reading must stop (one
  // slot, not a race with a promise that lives as long as the stream: each race would
  // leave a reaction on it, as many as there are messages)
  let stopWaiting: ((stopped: typeof STOPPED) => void) | undefined;
  const stop = () => stopWaiting?.(STOPPED);
  stopReading?.signal.addEventListener("abort", stop, { once: true });
  const unhook = () => stopReading?.signal.removeEventListener("abort", stop);
  const nextOrStop = <T>(it: AsyncIterator<T>) =>
    new Promise<IteratorResult<T> | typeof STOPPED>((resolve, reject) => {
      if (stopReading?.signal.aborted) return resolve(STOPPED);
      stopWaiting = resolve;
      it.next().then(resolve, reject);
    });
  /** Messages read whose answers have not been taken yet. */
  let pending = 0;
  let slot: (() => void) | undefined;
  let doneReading = false;
  /** Nobody takes answers any more (the call ended): reading stops. */
  let gone = false;
  let endWith: { error: unknown } | undefined;
  const end = () => (endWith ? out.fail(endWith.error) : out.close());
  const takenOne = () => {
    pending--;
    slot?.();
    slot = undefined;
    if (doneReading && pending === 0) end();
  };
  const unsent = (res: Res) => {
    try {
      onUnsent?.(res);
    } catch {
      // the caller's own failure; the stream's end goes on
    }
  };
  const answered = (res: Res) => {
    // a channel closed by a failure, or one nobody reads any more, drops what comes
    if (gone || out.isClosed) unsent(res);
    else out.push({ res, counted: true });
  };
  const reading = (async () => {
    const it = requests[Symbol.asyncIterator]();
    try {
      for (;;) {
        const next = await (stopReading ? nextOrStop(it) : it.next());
        stopWaiting = undefined;
        if (next === STOPPED) {
          endWith = { error: stopReading!.error() };
          break;
        }
        if (next.done) break;
        while (pending >= inFlight && !gone) await new Promise<void>((r) => (slot = r));
        if (gone) return;
        pending++;
        handle(next.value).then(answered, (err: unknown) => answered(onError(next.value, err)));
      }
    } catch (err) {
      // a request stream that fails (an undecodable message, say) ends the call, but
      // every message read before is answered first: an answer may say it was stored
      endWith = { error: err };
    }
    doneReading = true;
    if (pending === 0) end();
  })();
  try {
    for await (const { res, counted } of out) {
      yield res;
      if (counted) takenOne();
    }
  } finally {
    gone = true;
    for (const { res, counted } of out.takeQueued()) if (counted) unsent(res);
    slot?.();
    announce?.signal.removeEventListener("abort", announced);
    unhook();
    await reading;
  }
}
