import type { Migration as WireMigration } from "@codeq/proto";
import { invalid } from "./admin-checks";

/** The page tokens and page sizes of the admin listings (ListAuditEvents, ListMigrations). */

/** A page token's text (page tokens of admin listings are opaque to callers); `pattern` must match it whole (INVALID_ARGUMENT otherwise). */
function tokenText(token: string, pattern: RegExp): RegExpExecArray {
  const m = pattern.exec(Buffer.from(token, "base64url").toString("utf8"));
  if (!m) throw invalid("page_token is not one this service issued");
  return m;
}
const encodeToken = (text: string) => Buffer.from(text, "utf8").toString("base64url");

/**
 * An audit page's token: where the entry after the page's last one was, and that last
 * entry's version (entries before it in the log, newer, are not listed again). An
 * offset alone ("o<n>", what routers issued before) is still taken during an upgrade.
 */
export function auditCursorOf(page: string): { offset: number; before: number } {
  if (!page) return { offset: 0, before: Infinity };
  const m = tokenText(page, /^a(\d{1,15})v(\d{1,15})$|^o(\d{1,15})$/);
  if (m[3] !== undefined) return { offset: Number(m[3]), before: Infinity };
  return { offset: Number(m[1]), before: Number(m[2]) };
}
export const auditTokenOf = (offset: number, version: number) =>
  encodeToken(`a${offset}v${version}`);

/** A migrations page's token: its last migration's start and id, or an older router's offset. */
export function migrationCursorOf(
  page: string,
): { startedAtMs: number; id: string } | { offset: number } | undefined {
  if (!page) return undefined;
  const m = tokenText(page, /^m(\d{1,15}) (\S{1,128})$|^o(\d{1,15})$/);
  if (m[3] !== undefined) return { offset: Number(m[3]) };
  return { startedAtMs: Number(m[1]), id: m[2]! };
}
export const migrationTokenOf = (m: WireMigration) => encodeToken(`m${m.startedAtMs} ${m.id}`);

export function pageSize(size: number): number {
  const n = size || 100;
  if (n > 1000) throw invalid(`page_size must be at most 1000, got ${size}`);
  return n;
}
