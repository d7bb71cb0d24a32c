import { ServerError, Status } from "nice-grpc";
import {
  auditCursorOf,
  auditTokenOf,
  migrationCursorOf,
  migrationTokenOf,
  pageSize,
} from "./admin-page-tokens";
import { migrationToWire } from "./admin-wire";

/** The error `f` throws (the test fails when it throws none). */
function refusal(f: () => unknown): ServerError {
  try {
    f();
  } catch (err) {
    return err as ServerError;
  }
  throw new Error("not refused");
}

/** A page token as routers issued them before keyed pages: an offset. */
const offsetToken = (offset: number) => Buffer.from(`o${offset}`, "utf8").toString("base64url");

const lastListed = migrationToWire({
  id: "mig-m1abc-0f0f0f",
  command: "X",
  from: "a",
  to: "b",
  state: "copying",
  startedAtMs: 1_700_000_000_123,
});

test("an audit page's token gives the next page's offset and the version it stays below", () => {
  expect(auditCursorOf(auditTokenOf(40, 1234))).toEqual({ offset: 40, before: 1234 });
  expect(auditCursorOf("")).toEqual({ offset: 0, before: Infinity });
});

test("a migrations page's token gives its last migration's start and id", () => {
  expect(migrationCursorOf(migrationTokenOf(lastListed))).toEqual({
    startedAtMs: 1_700_000_000_123,
    id: "mig-m1abc-0f0f0f",
  });
  expect(migrationCursorOf("")).toBeUndefined();
});

test("an older router's offset token is still taken by both listings", () => {
  expect(auditCursorOf(offsetToken(7))).toEqual({ offset: 7, before: Infinity });
  expect(migrationCursorOf(offsetToken(7))).toEqual({ offset: 7 });
});

test.each([
  ["text that is no token, to ListAuditEvents", () => auditCursorOf("bm90LWEtdG9rZW4")],
  ["text that is no token, to ListMigrations", () => migrationCursorOf("bm90LWEtdG9rZW4")],
  ["a migrations token, to ListAuditEvents", () => auditCursorOf(migrationTokenOf(lastListed))],
  ["an audit token, to ListMigrations", () => migrationCursorOf(auditTokenOf(40, 1234))],
])("a page token this service did not issue is INVALID_ARGUMENT: %s", (_, read) => {
  const err = refusal(read);
  expect(err.code).toBe(Status.INVALID_ARGUMENT);
  expect(err.details).toBe("page_token is not one this service issued");
});

test("a page holds 100 unless asked, and at most 1000", () => {
  expect(pageSize(0)).toBe(100);
  expect(pageSize(1000)).toBe(1000);
  const err = refusal(() => pageSize(1001));
  expect(err.code).toBe(Status.INVALID_ARGUMENT);
  expect(err.details).toBe("page_size must be at most 1000, got 1001");
});
