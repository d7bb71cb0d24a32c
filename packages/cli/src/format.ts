import type { MigrationCounts } from "@codeq/proto";

/** An enum value's name without its type prefix: MIGRATION_STATE_COMPLETED → COMPLETED. */
export function shortEnum(name: string, prefix: string): string {
  return name.startsWith(prefix) ? name.slice(prefix.length) : name;
}

/** A Unix time in ms as "YYYY-MM-DD HH:MM:SSZ"; "-" for 0 (unset). */
export function time(ms: number): string {
  if (!ms) return "-";
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + "Z";
}

/** A command or one tenant's queue of it, as "command" or "command/tenant". */
export function queueLabel(command: string, tenant: string): string {
  return tenant ? `${command}/${tenant}` : command;
}

/** Tasks counted in migration counts (idempotency keys are records, not tasks). */
export function taskCount(c: MigrationCounts | undefined): number {
  return c ? c.ready + c.scheduled + c.dead + c.leased : 0;
}

// printable UTF-8: no control characters other than tab
const PRINTABLE = /^[^\p{Cc}]*$/u;

/**
 * A payload as text when it is printable UTF-8, otherwise "b64:" and its
 * base64. Long text is cut at `max` characters with "…".
 */
export function payloadText(bytes: Uint8Array, max = Infinity): string {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const decoded = new TextDecoder("utf-8", { fatal: false }).decode(buf);
  const text =
    Buffer.from(decoded, "utf8").equals(buf) && PRINTABLE.test(decoded.replace(/\t/g, " "))
      ? decoded
      : `b64:${buf.toString("base64")}`;
  const chars = [...text];
  return chars.length > max ? chars.slice(0, Math.max(0, max - 1)).join("") + "…" : text;
}

/** A list shortened to its first `max` entries and a count of the rest. */
export function shortList(items: readonly string[], max = 5): string {
  if (items.length <= max) return items.join(", ");
  return `${items.slice(0, max).join(", ")} … (+${items.length - max})`;
}
