import { Metadata, Status } from "nice-grpc";
import { credentialExpired, onCredentialExpiry, streamStop } from "./credential-expiry";

const DAY = 24 * 3600_000;
const who = (acceptedUntilMs?: number) => ({
  tenant: "t",
  principal: "p",
  roles: new Set(["worker"] as const),
  ...(acceptedUntilMs !== undefined && { acceptedUntilMs }),
});

/** A forwarded call of `identity`, its credential checked again by `stillAccepted`. */
const fwd = (identity: ReturnType<typeof who>, stillAccepted?: () => Promise<boolean>) => ({
  identity,
  metadata: new Metadata(),
  signal: new AbortController().signal,
  ...(stillAccepted && { stillAccepted }),
});

beforeEach(() => jest.useFakeTimers({ now: Date.UTC(2030, 0, 1) }));
afterEach(() => jest.useRealTimers());

test("an expiry further away than a timer can wait is waited for in steps, and fires once", () => {
  const expired = jest.fn();
  onCredentialExpiry(who(Date.now() + 30 * DAY), expired);
  jest.advanceTimersByTime(2 ** 31); // past one timer's longest wait, short of 30 days
  expect(expired).not.toHaveBeenCalled();
  jest.advanceTimersByTime(30 * DAY - 2 ** 31 - 1);
  expect(expired).not.toHaveBeenCalled();
  jest.advanceTimersByTime(1);
  expect(expired).toHaveBeenCalledTimes(1);
  jest.advanceTimersByTime(30 * DAY);
  expect(expired).toHaveBeenCalledTimes(1);
});

test("a credential past its expiry fires at once; one without none ever; a stopped wait never", () => {
  const past = jest.fn();
  onCredentialExpiry(who(Date.now() - 1), past);
  expect(past).toHaveBeenCalledTimes(1);
  const never = jest.fn();
  onCredentialExpiry(who(), never);
  const stopped = jest.fn();
  onCredentialExpiry(who(Date.now() + 1_000), stopped)();
  jest.advanceTimersByTime(DAY);
  expect(never).not.toHaveBeenCalled();
  expect(stopped).not.toHaveBeenCalled();
});

test("a wall clock stepped forward is noticed within a minute", () => {
  const expired = jest.fn();
  let step = 0;
  onCredentialExpiry(who(Date.now() + DAY), expired, () => Date.now() + step);
  step = DAY; // the clock jumps a day ahead; the timers do not
  jest.advanceTimersByTime(59_999);
  expect(expired).not.toHaveBeenCalled();
  jest.advanceTimersByTime(1);
  expect(expired).toHaveBeenCalledTimes(1);
});

test("a stream stops with the cause that came first: expiry, or the router's shutdown", () => {
  const shutdown = new AbortController();
  const first = streamStop(fwd(who(Date.now() + 1_000)), 0, shutdown.signal);
  const later = streamStop(fwd(who(Date.now() + 5_000)), 0, shutdown.signal);
  const closed = streamStop(fwd(who(Date.now() + 1_000)), 0, shutdown.signal);
  closed.close();
  jest.advanceTimersByTime(1_000);
  expect(first.signal.aborted).toBe(true);
  expect(first.error()).toMatchObject({
    code: Status.UNAUTHENTICATED,
    details: expect.stringContaining(
      "credential expired (accepted until 2030-01-01T00:00:01.000Z, its exp with the clock tolerance)",
    ),
  });
  expect(later.signal.aborted).toBe(false);
  shutdown.abort();
  expect(later.error()).toMatchObject({ code: Status.UNAVAILABLE });
  expect(first.error().code).toBe(Status.UNAUTHENTICATED);
  jest.advanceTimersByTime(DAY);
  expect(later.error().code).toBe(Status.UNAVAILABLE);
  expect(closed.signal.aborted).toBe(false);
  expect(credentialExpired(who()).details).toMatch(/^the stream's credential expired; open/);
});

test("a credential checked again and refused, or standing for another caller, stops the stream", async () => {
  const shutdown = new AbortController();
  let accepted = true;
  const checks = jest.fn(async () => accepted);
  const stop = streamStop(fwd(who(), checks), 1_000, shutdown.signal);
  const never = streamStop(fwd(who(), checks), 0, shutdown.signal); // 0: not checked again
  await jest.advanceTimersByTimeAsync(1_000);
  expect(checks).toHaveBeenCalledTimes(1);
  expect(stop.signal.aborted).toBe(false);
  accepted = false;
  await jest.advanceTimersByTimeAsync(1_000);
  expect(checks).toHaveBeenCalledTimes(2);
  expect(stop.signal.aborted).toBe(true);
  expect(stop.error()).toMatchObject({
    code: Status.UNAUTHENTICATED,
    details: expect.stringContaining("the stream's credential is no longer accepted"),
  });
  // no more checks once it stopped; none for the stream that is not checked
  await jest.advanceTimersByTimeAsync(5_000);
  expect(checks).toHaveBeenCalledTimes(2);
  expect(never.signal.aborted).toBe(false);
  stop.close();
  never.close();
});
