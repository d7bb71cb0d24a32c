/**
 * The names a shard map may hold. Shard ids, commands and tenants become parts of
 * store keys and lease tokens, so they are restricted to characters that cannot
 * break the key layout (the rules of `@codeq/common`, which the engine enforces too); endpoints are the
 * `host:port` of a shard worker's gRPC server.
 */

import { NAME } from "@codeq/common";

export { NAME_PATTERN, SHARD_ID_PATTERN } from "@codeq/common";

/** A tenant override key, `<command>/<tenant>` (neither part may contain `/`). */
export const TENANT_KEY_PATTERN = new RegExp(`^(${NAME})/(${NAME})$`);

const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$/;

/** True for `host:port` with a DNS name, IPv4 address or bracketed IPv6 address and a port 1..65535. */
export function isEndpoint(value: string): boolean {
  const colon = value.lastIndexOf(":");
  if (colon <= 0) return false;
  const host = value.slice(0, colon);
  const port = value.slice(colon + 1);
  if (!/^[0-9]{1,5}$/.test(port)) return false;
  const n = Number(port);
  return n >= 1 && n <= 65535 && HOST.test(host);
}

/** The tenant override key of a queue. */
export function tenantKey(command: string, tenant: string): string {
  return `${command}/${tenant}`;
}
