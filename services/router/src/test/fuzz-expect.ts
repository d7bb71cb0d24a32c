import { Status } from "nice-grpc";
import { decodeLeaseToken, NAME_PATTERN } from "@codeq/engine";
import type { ItemStatus } from "@codeq/proto";
import type { Caller } from "./fuzz-settings";

/**
 * What every answer in the router's fuzz tests must be: a clear refusal, or a success
 * that holds the caller's own data only.
 */

/** Refusals that tell the caller what is wrong with its request. */
export const CLEAR = new Set<number>([
  Status.INVALID_ARGUMENT,
  Status.NOT_FOUND,
  Status.FAILED_PRECONDITION,
  Status.PERMISSION_DENIED,
  Status.UNAUTHENTICATED,
  Status.RESOURCE_EXHAUSTED,
  Status.OUT_OF_RANGE,
  Status.ABORTED,
  Status.ALREADY_EXISTS,
]);

/** A refusal that tells the caller what is wrong, briefly, without repeating a huge input. */
export function expectClear(what: string, code: number, message: string): void {
  if (!CLEAR.has(code))
    throw new Error(`${what}: ${Status[code]} is not a clear refusal: ${message.slice(0, 300)}`);
  if (message.length === 0) throw new Error(`${what}: ${Status[code]} without a message`);
  if (message.length >= 1000)
    throw new Error(`${what}: a ${message.length}-character message: ${message.slice(0, 200)}…`);
}

export function expectItem(what: string, s: ItemStatus | undefined): void {
  if (!s) throw new Error(`${what}: no status`);
  if (s.code !== Status.OK) expectClear(what, s.code, s.message);
}

/**
 * A settlement may succeed only with the caller's own token; another tenant's token,
 * or a malformed one, is NOT_FOUND, exactly like an unknown one.
 */
export function expectSettlement(
  what: string,
  token: string,
  s: ItemStatus | undefined,
  who: Caller,
  oversized = false,
): void {
  expectItem(what, s);
  const own = decodeLeaseToken(token)?.tenant === who.tenant;
  if (s!.code === Status.OK) {
    if (!own)
      throw new Error(`${what}: settled a token that is not the caller's: ${token.slice(0, 120)}`);
    if (oversized) throw new Error(`${what}: accepted an ack result over the 1 MiB cap`);
  } else if (!own && s!.code !== Status.NOT_FOUND) {
    throw new Error(`${what}: a foreign or malformed token got ${Status[s!.code]}, not NOT_FOUND`);
  }
}

/** Every task in an answer is the caller's; every item status in it is OK or clear. */
export function expectOwnOnly(value: unknown, tenant: string, what: string): void {
  const walk = (v: unknown, at: string): void => {
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${at}[${i}]`));
    else if (v !== null && typeof v === "object" && !(v instanceof Uint8Array)) {
      const o = v as Record<string, unknown>;
      if (typeof o.tenant === "string" && typeof o.id === "string" && o.tenant !== tenant)
        throw new Error(`${what}${at}: a task of tenant ${o.tenant} reached ${tenant}`);
      if (typeof o.code === "number" && typeof o.message === "string" && o.code !== Status.OK)
        expectClear(`${what}${at}`, o.code, o.message);
      for (const [k, x] of Object.entries(o)) walk(x, `${at}.${k}`);
    }
  };
  walk(value, "");
}

/** An answer other than a refusal needs the admin right (ListDead, RedriveDead, PurgeDead). */
export function expectAdmin(who: Caller): void {
  if (!who.admin) throw new Error(`answered a caller without the admin right (${who.tenant})`);
}

export function expectValidCommand(command: string | undefined): void {
  if (!NAME_PATTERN.test(command ?? ""))
    throw new Error(`accepted the command ${JSON.stringify((command ?? "").slice(0, 60))}`);
}
