/**
 * A ShardSupplier without a map: consistent hashing of the queue name
 * (`<command>/<tenant>`) onto a ring where every shard owns `vnodes` points
 * (128 by default). Adding a shard to N takes over about 1/(N+1) of the queues,
 * all of them moving to the new shard; the rest stay where they were. Points and
 * keys are hashed with MD5 (first 48 bits), so every process agrees on the ring.
 * A queue lives on one shard only, so `queueShards` is `[currentShard]`.
 */
import { createHash } from "node:crypto";
import { formatProblems, ShardMapError } from "./errors";
import { SHARD_ID_PATTERN, tenantKey } from "./names";
import type { ShardSupplier } from "./supplier";

export interface HashSupplierOptions {
  /** Points per shard on the ring. Default 128. */
  vnodes?: number;
}

/** 48 bits of MD5: exact as a JS number, and collisions are negligible for a ring. */
function hash48(text: string): number {
  return createHash("md5").update(text).digest().readUIntBE(0, 6);
}

export class HashSupplier implements ShardSupplier {
  readonly shards: readonly string[];
  /** Ring points, ascending, with the shard owning each at the same index. */
  private readonly points: number[];
  private readonly owners: string[];

  constructor(shards: readonly string[], options: HashSupplierOptions = {}) {
    const vnodes = options.vnodes ?? 128;
    const problems: string[] = [];
    if (shards.length === 0) problems.push("at least one shard is required");
    if (!Number.isInteger(vnodes) || vnodes < 1 || vnodes > 10_000)
      problems.push(`vnodes must be an integer 1..10000, got ${vnodes}`);
    const seen = new Set<string>();
    for (const id of shards) {
      if (!SHARD_ID_PATTERN.test(id))
        problems.push(`shard id ${JSON.stringify(id)} must match ${SHARD_ID_PATTERN.source}`);
      if (seen.has(id)) problems.push(`shard ${JSON.stringify(id)} is listed twice`);
      seen.add(id);
    }
    if (problems.length > 0)
      throw new ShardMapError(formatProblems("invalid hash supplier:", problems), { problems });

    const ring: Array<[point: number, shard: string]> = [];
    for (const id of shards) {
      for (let i = 0; i < vnodes; i++) ring.push([hash48(`${id}#${i}`), id]);
    }
    // Ties (astronomically rare) are broken by shard id, so the ring never depends on input order.
    ring.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    this.shards = [...shards];
    this.points = ring.map(([point]) => point);
    this.owners = ring.map(([, id]) => id);
  }

  /** The owner of the first ring point at or after the queue's hash (wrapping around). */
  currentShard(command: string, tenant: string): string {
    const h = hash48(tenantKey(command, tenant));
    let lo = 0;
    let hi = this.points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return this.owners[lo === this.points.length ? 0 : lo]!;
  }

  queueShards(command: string, tenant: string): string[] {
    return [this.currentShard(command, tenant)];
  }
}
