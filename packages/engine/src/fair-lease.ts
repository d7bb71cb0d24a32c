import type { EngineContext } from "./engine-context";
import type { QueueRef } from "./keys";
import { deliveryBytes } from "./lease-size";
import { leaseCall, type Delivery, type LeaseCallResult } from "./lease";
import type { LeaseOptions } from "./lease-options";
import { queues } from "./queue-reads";

/**
 * Leases across every tenant of a command for a worker allowed to serve them all.
 * Tenants are served round-robin: each call starts at the tenant after the one the
 * previous call served last, and the tasks asked for are split evenly among the
 * tenants of a round, so a tenant with a huge backlog cannot starve the others.
 * Tenants come from the shard's queue registry, re-read at most every `refreshMs`.
 * A byte bound (`maxBytes`) is split among the tenants of a round as the tasks are;
 * in a call's first round each tenant may keep one task over its share (a large task
 * of a tenant the rotation does not start at is served, not given back every time),
 * and what then passes the bound goes back, the rotation going on after the last
 * tenant served.
 */
export class FairLeaser {
  private readonly cursors = new Map<string, number>();
  private readonly tenants = new Map<string, { at: number; list: string[]; has: Set<string> }>();
  /**
   * Per command whose tenants are being read from the registry: bumped when a tenant
   * the cache lacks gets tasks (the read in flight then is not kept). Only while reads
   * are in flight: a command nobody leases across tenants keeps no entry.
   */
  private readonly news = new Map<string, { bumps: number; reads: number }>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly refreshMs = 1_000,
  ) {}

  /**
   * `queue` has just been given tasks (an enqueue or an import): a tenant the cached
   * list lacks is read from the registry at the next lease, rather than up to
   * `refreshMs` later, so a new tenant's first task is served at once.
   */
  saw(queue: QueueRef): void {
    const cached = this.tenants.get(queue.command);
    if (cached?.has.has(queue.tenant)) return;
    this.tenants.delete(queue.command);
    const news = this.news.get(queue.command);
    if (news) news.bumps++;
  }

  /**
   * `first`, when it is one of the command's tenants, starts the call instead of the
   * tenant after the last one served: a waiter woken for that tenant's tasks takes
   * them (`Notifier.wait` in the shard worker). The round-robin goes on from wherever
   * this call stopped.
   */
  async lease(command: string, options: LeaseOptions, first?: string): Promise<Delivery[]> {
    const all = await this.tenantsOf(command);
    if (all.length === 0) return [];
    const hinted = first === undefined ? -1 : all.indexOf(first);
    const start = hinted >= 0 ? hinted : (this.cursors.get(command) ?? 0) % all.length;
    // rotate so this call begins where the last one stopped
    let candidates = [...all.slice(start), ...all.slice(0, start)];
    const out: Delivery[] = [];
    const calls: LeaseCallResult[] = [];
    let bytes = 0;
    while (out.length < options.max && candidates.length > 0) {
      const remaining = options.max - out.length;
      const round = candidates.slice(0, Math.min(candidates.length, remaining));
      const share = Math.floor(remaining / round.length);
      const extra = remaining - share * round.length;
      const asks = round.map((_, i) => share + (i < extra ? 1 : 0));
      // a byte bound is shared out too; while nothing is leased, a tenant keeps a task
      // over its share: one no call keeps would be given back, the version it moves
      // would wake the caller to lease again, and the tenant would never be served
      const bytesLeft = options.maxBytes === undefined ? undefined : options.maxBytes - bytes;
      if (bytesLeft !== undefined && bytesLeft <= 0) break;
      const settled = await Promise.allSettled(
        round.map((tenant, i) =>
          leaseCall(
            this.ctx,
            { command, tenant },
            {
              max: asks[i]!,
              leaseMs: options.leaseMs,
              maxBytes: bytesLeft === undefined ? undefined : Math.floor(bytesLeft / round.length),
              firstAlways: options.firstAlways !== false && out.length === 0,
            },
          ),
        ),
      );
      const failed = settled.find((r) => r.status === "rejected");
      if (failed) {
        // the calls that did lease, in this round and before, are given back: the
        // caller gets none of them (not left leased until they expire)
        const leased = [
          ...calls,
          ...settled.flatMap((r) => (r.status === "fulfilled" ? [r.value] : [])),
        ];
        await Promise.all(leased.map((call) => call.giveBack([])));
        throw failed.reason;
      }
      const results = settled.map((r) => (r as PromiseFulfilledResult<LeaseCallResult>).value);
      const stillFull: string[] = [];
      results.forEach((call, i) => {
        const got = call.deliveries;
        calls.push(call);
        out.push(...got);
        bytes += call.bytes;
        // a tenant that gave all it was asked may have more
        if (got.length === asks[i]) stillFull.push(round[i]!);
      });
      // tenants not yet asked come before those asked again
      candidates = [...candidates.slice(round.length), ...stillFull];
    }
    // the first round's calls may have kept tasks larger than their shares while the
    // others filled theirs: what passes the bound goes back
    const { kept, cut } =
      options.maxBytes === undefined || bytes <= options.maxBytes
        ? { kept: out, cut: undefined }
        : await keepWithin(calls, options.maxBytes, options.firstAlways !== false);
    // the next call starts after the last tenant served, or at the first whose task
    // went back for its size: first in the next call, it keeps it whatever its size
    // (starting after it, tenants with backlogs on either side would fill the bound
    // before it, call after call)
    const next = cut ?? kept.at(-1);
    if (next) this.cursors.set(command, all.indexOf(next.task.tenant) + (cut ? 0 : 1));
    return kept;
  }

  /** Commands with a registry read in flight (for tests). */
  get reading(): number {
    return this.news.size;
  }

  private async tenantsOf(command: string): Promise<string[]> {
    const now = Date.now();
    const cached = this.tenants.get(command);
    if (cached && now - cached.at < this.refreshMs) return cached.list;
    // an expired list must not answer `saw` while the registry is read: a tenant it
    // holds may have left the registry (emptied) and be back with a task meanwhile
    this.tenants.delete(command);
    let news = this.news.get(command);
    if (!news) this.news.set(command, (news = { bumps: 0, reads: 0 }));
    news.reads++;
    const seen = news.bumps;
    try {
      const list = (await queues(this.ctx, command)).map((q) => q.tenant);
      if (news.bumps === seen) this.tenants.set(command, { at: now, list, has: new Set(list) });
      return list;
    } finally {
      if (--news.reads === 0) this.news.delete(command);
    }
  }
}

/**
 * The deliveries of `calls`, in order, within `maxBytes` (with `firstAlways`, the first
 * whatever its size), and the first delivery that did not fit; each call gives back
 * what of it was not kept.
 */
async function keepWithin(
  calls: readonly LeaseCallResult[],
  maxBytes: number,
  firstAlways: boolean,
): Promise<{ kept: Delivery[]; cut: Delivery | undefined }> {
  const kept: Delivery[] = [];
  let cut: Delivery | undefined;
  let bytes = 0;
  await Promise.all(
    calls.map((call) => {
      const keep: string[] = [];
      for (const d of call.deliveries) {
        const size = deliveryBytes(d);
        if (bytes + size > maxBytes && !(firstAlways && kept.length === 0)) {
          cut ??= d;
          continue;
        }
        kept.push(d);
        keep.push(d.task.id);
        bytes += size;
      }
      return keep.length < call.deliveries.length ? call.giveBack(keep) : undefined;
    }),
  );
  return { kept, cut };
}
