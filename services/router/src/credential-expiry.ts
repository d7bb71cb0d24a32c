import { ServerError, Status } from "nice-grpc";
import type { Identity } from "@codeq/server-kit";
import { routerShuttingDown } from "./fan-out";

/**
 * An expiry further away is waited for in steps of this, each checking the clock
 * again: a wall clock stepped forward is noticed within a step (and setTimeout waits
 * no longer than 2^31 - 1 ms).
 */
const STEP_MS = 60_000;

/**
 * Calls `expired` once the caller's credential stops being accepted (its
 * `acceptedUntilMs`, on the wall clock the verifier judged it by); at once when that
 * has passed. A credential without an expiry is never waited for. Returns what stops
 * the wait.
 */
export function onCredentialExpiry(
  identity: Identity,
  expired: () => void,
  now: () => number = Date.now,
): () => void {
  const until = identity.acceptedUntilMs;
  if (until === undefined) return () => undefined;
  let timer: NodeJS.Timeout | undefined;
  const wait = () => {
    const left = until - now();
    if (left > 0) timer = setTimeout(wait, Math.min(left, STEP_MS));
    else expired();
  };
  wait();
  return () => clearTimeout(timer);
}

/** How a stream opened with a credential that has expired since ends. */
export function credentialExpired(identity: Identity): ServerError {
  const at = identity.acceptedUntilMs;
  return new ServerError(
    Status.UNAUTHENTICATED,
    `the stream's credential expired${at === undefined ? "" : ` (accepted until ${new Date(at).toISOString()}, its exp with the clock tolerance)`}; open a new stream with a fresh credential (before one expires: open the new stream, withdraw the old one's credits, settle what it holds, then close it)`,
  );
}

/** When a stream stops reading, and what it ends with then. */
export interface StreamStop {
  readonly signal: AbortSignal;
  readonly error: () => ServerError;
  /** Stops watching (the stream ended). */
  close(): void;
}

/** Stops a stream at the router's shutdown (`shutdown`), or once the caller's credential expires. */
export function streamStop(identity: Identity, shutdown: AbortSignal): StreamStop {
  const stop = new AbortController();
  let error = routerShuttingDown;
  const stopWith = (cause: () => ServerError) => {
    if (stop.signal.aborted) return;
    error = cause;
    stop.abort();
  };
  const onShutdown = () => stopWith(routerShuttingDown);
  if (shutdown.aborted) onShutdown();
  else shutdown.addEventListener("abort", onShutdown, { once: true });
  const unwatch = onCredentialExpiry(identity, () => stopWith(() => credentialExpired(identity)));
  return {
    signal: stop.signal,
    error: () => error(),
    close() {
      shutdown.removeEventListener("abort", onShutdown);
      unwatch();
    },
  };
}
