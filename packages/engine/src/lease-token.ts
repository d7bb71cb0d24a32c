import { NAME, SHARD_ID } from "@codeq/common";
import type { QueueRef } from "./keys";

/**
 * Lease tokens are opaque to clients. Inside:
 *
 *   c1~<shard>~<command>~<tenant>~<task id>~<lease seq>~<nonce>
 *
 * The shard comes first so a router routes an ack by reading up to the second `~`,
 * whatever the map says now. The lease sequence grows with every delivery and is
 * never reset; the nonce is a random value the lease script drew for this delivery
 * and stored with the task. A settle must present both, so only the latest
 * delivery's holder can settle it, and a token cannot be made up from a task id.
 */
export interface LeaseTokenFields {
  readonly shard: string;
  readonly command: string;
  readonly tenant: string;
  readonly taskId: string;
  /** The task's lease sequence at this delivery. */
  readonly fence: number;
  /** The random value drawn for this delivery, < 2^46. */
  readonly nonce: number;
}

const VERSION = "c1";
const SEP = "~";
/** Lease nonces are below this (nine base-36 digits at most). */
export const NONCE_LIMIT = 2 ** 46;

export function encodeLeaseToken(f: LeaseTokenFields): string {
  return `${VERSION}${SEP}${f.shard}${SEP}${f.command}${SEP}${f.tenant}${SEP}${f.taskId}${SEP}${f.fence}${SEP}${f.nonce.toString(36)}`;
}

/** The longest token a delivery of `queue` on `shard` can have (its sequence and nonce at their widest). */
export function leaseTokenMaxLength(shard: string, queue: QueueRef): number {
  // "c1", six separators, the names, a 26-character id, 10 sequence and 9 nonce digits
  return (
    VERSION.length + 6 + shard.length + queue.command.length + queue.tenant.length + 26 + 10 + 9
  );
}

const TOKEN = new RegExp(
  `^c1~(${SHARD_ID})~(${NAME})~(${NAME})~([0-9A-HJKMNP-TV-Z]{26})~([1-9][0-9]{0,9})~([0-9a-z]{1,9})$`,
);

/** The token's fields, or undefined when it is not a well-formed lease token. */
export function decodeLeaseToken(token: string): LeaseTokenFields | undefined {
  const m = token.length <= 512 ? TOKEN.exec(token) : null;
  if (!m) return undefined;
  const nonce = parseInt(m[6]!, 36);
  if (nonce >= NONCE_LIMIT) return undefined;
  return { shard: m[1]!, command: m[2]!, tenant: m[3]!, taskId: m[4]!, fence: Number(m[5]), nonce };
}

/**
 * The command and tenant a token names, read without checking the rest (what an
 * ownership check needs before the settle verifies the whole token). Names cannot
 * hold the separator, so for a well-formed token these are exactly its fields.
 */
export function leaseTokenQueue(token: string): QueueRef | undefined {
  if (!token.startsWith(VERSION + SEP)) return undefined;
  const shardEnd = token.indexOf(SEP, VERSION.length + 1);
  const commandEnd = shardEnd < 0 ? -1 : token.indexOf(SEP, shardEnd + 1);
  const tenantEnd = commandEnd < 0 ? -1 : token.indexOf(SEP, commandEnd + 1);
  if (tenantEnd < 0) return undefined;
  return {
    command: token.slice(shardEnd + 1, commandEnd),
    tenant: token.slice(commandEnd + 1, tenantEnd),
  };
}

/** The shard a token names, without parsing the rest (what a router needs). */
export function leaseTokenShard(token: string): string | undefined {
  if (!token.startsWith(VERSION + SEP)) return undefined;
  const end = token.indexOf(SEP, VERSION.length + 1);
  return end < 0 ? undefined : token.slice(VERSION.length + 1, end);
}

/** "c1~" as UTF-8 bytes, and "~". */
const PREFIX_BYTES = Buffer.from(VERSION + SEP, "latin1");
const SEP_BYTE = SEP.charCodeAt(0);

/**
 * `leaseTokenShard` of a token still in UTF-8 bytes (as a router reads it off the
 * wire without decoding the message): the shard's bytes, or undefined when the token
 * names none, an empty one included (which names no shard of any map).
 */
export function leaseTokenShardBytes(token: Uint8Array): Uint8Array | undefined {
  for (let i = 0; i < PREFIX_BYTES.length; i++) if (token[i] !== PREFIX_BYTES[i]) return undefined;
  const end = token.indexOf(SEP_BYTE, PREFIX_BYTES.length);
  return end > PREFIX_BYTES.length ? token.subarray(PREFIX_BYTES.length, end) : undefined;
}
