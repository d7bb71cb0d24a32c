import { Status } from "nice-grpc";
import { credentialExpired, onCredentialExpiry, streamStop } from "./credential-expiry";

const DAY = 24 * 3600_000;
const who = (acceptedUntilMs?: number) => ({
  tenant: "t",
  principal: "p",
  roles: new Set(["worker"] as const),
  ...(acceptedUntilMs !== undefined && { acceptedUntilMs }),
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
  const first = streamStop(who(Date.now() + 1_000), shutdown.signal);
  const later = streamStop(who(Date.now() + 5_000), shutdown.signal);
  const closed = streamStop(who(Date.now() + 1_000), shutdown.signal);
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
