import { ServerError, Status } from "nice-grpc";
import type { Identity } from "@codeq/server-kit";
import { routerShuttingDown } from "./fan-out";
import type { Forward } from "./routing";

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

/**
 * Calls `stopped` once the credential `f` was opened with stops being accepted: when it
 * expires (`onCredentialExpiry`), or when a check every `recheckMs` finds it refused
 * now (`Forward.stillAccepted`: a static token taken out of the tokens file, a JWT
 * whose key left the key set) or standing for another caller. A check that cannot be
 * made (the key set's URL down) counts as accepted. `stopped` gets what the stream
 * ends with. Returns what stops the watch.
 */
export function watchCredential(
  f: Forward,
  recheckMs: number,
  stopped: (error: () => ServerError) => void,
): () => void {
  const unwatchExpiry = onCredentialExpiry(f.identity, () =>
    stopped(() => credentialExpired(f.identity)),
  );
  const stillAccepted = f.stillAccepted;
  if (!stillAccepted || recheckMs <= 0) return unwatchExpiry;
  let timer: NodeJS.Timeout | undefined;
  let done = false;
  const until = f.identity.acceptedUntilMs;
  const check = async () => {
    const accepted = await stillAccepted();
    if (done) return;
    if (accepted) timer = setTimeout(() => void check(), recheckMs);
    // refused because it expired (the check came before the expiry's own timer): said so
    else if (until !== undefined && Date.now() >= until)
      stopped(() => credentialExpired(f.identity));
    else stopped(credentialWithdrawn);
  };
  timer = setTimeout(() => void check(), recheckMs);
  return () => {
    done = true;
    clearTimeout(timer);
    unwatchExpiry();
  };
}

/** How a stream whose credential a later check refused ends. */
export function credentialWithdrawn(): ServerError {
  return new ServerError(
    Status.UNAUTHENTICATED,
    "the stream's credential is no longer accepted (withdrawn, or it now stands for another caller); open a new stream with a valid credential",
  );
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

/**
 * Stops a stream at the router's shutdown (`shutdown`), or once the caller's credential
 * stops being accepted (`watchCredential`).
 */
export function streamStop(f: Forward, recheckMs: number, shutdown: AbortSignal): StreamStop {
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
  const unwatch = watchCredential(f, recheckMs, stopWith);
  return {
    signal: stop.signal,
    error: () => error(),
    close() {
      shutdown.removeEventListener("abort", onShutdown);
      unwatch();
    },
  };
}
