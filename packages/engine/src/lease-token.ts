import { createHmac, timingSafeEqual } from "node:crypto";
import { NAME_PATTERN, SHARD_ID_PATTERN } from "./keys";
import { TASK_ID_PATTERN } from "./task-id";

/**
 * Lease tokens are opaque to clients. Inside:
 *
 *   c1~<shard>~<command>~<tenant>~<task id>~<fence>~<mac>
 *
 * The shard comes first so a router routes an ack by reading up to the second `~`,
 * whatever the map says now. The fence is the task's lease sequence: it grows with
 * every delivery and is never reset, so only the latest delivery's token matches.
 * The MAC (HMAC-SHA256 under the shard's secret, 128 bits) makes tokens
 * unforgeable: knowing a task id is not enough to settle someone else's delivery.
 */
export interface LeaseTokenFields {
  readonly shard: string;
  readonly command: string;
  readonly tenant: string;
  readonly taskId: string;
  readonly fence: number;
}

const VERSION = "c1";
const SEP = "~";
const MAC_CHARS = 22; // 128 bits of base64url

/** The shard a token names, without verifying it (what a router needs). */
export function leaseTokenShard(token: string): string | undefined {
  if (!token.startsWith(VERSION + SEP)) return undefined;
  const end = token.indexOf(SEP, VERSION.length + 1);
  return end < 0 ? undefined : token.slice(VERSION.length + 1, end);
}

/** Signs and verifies the lease tokens of one shard. */
export class LeaseTokenCodec {
  constructor(private readonly secret: Buffer) {
    if (secret.length < 16) throw new Error("lease token secret must be at least 16 bytes");
  }

  encode(fields: LeaseTokenFields): string {
    const body = [
      VERSION,
      fields.shard,
      fields.command,
      fields.tenant,
      fields.taskId,
      fields.fence,
    ].join(SEP);
    return `${body}${SEP}${this.mac(body)}`;
  }

  /** The token's fields, or undefined when it is malformed or not signed by this shard's secret. */
  decode(token: string): LeaseTokenFields | undefined {
    if (token.length > 512) return undefined;
    const parts = token.split(SEP);
    if (parts.length !== 7 || parts[0] !== VERSION) return undefined;
    const [, shard, command, tenant, taskId, fenceText, mac] = parts as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    if (!SHARD_ID_PATTERN.test(shard) || !NAME_PATTERN.test(command) || !NAME_PATTERN.test(tenant))
      return undefined;
    if (!TASK_ID_PATTERN.test(taskId) || !/^[1-9][0-9]{0,14}$/.test(fenceText)) return undefined;
    const expected = Buffer.from(this.mac(token.slice(0, token.length - mac.length - 1)));
    const given = Buffer.from(mac);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    return { shard, command, tenant, taskId, fence: Number(fenceText) };
  }

  private mac(body: string): string {
    return createHmac("sha256", this.secret).update(body).digest("base64url").slice(0, MAC_CHARS);
  }
}
