/**
 * Pushes a stream keeps apart, at most. Past it the two oldest are merged: a Set of
 * tokens held that long changes rarely, and each new push keeps a Set of its own. An ack
 * for a token not held looks in at most this many Sets.
 */
const MAX_SETS = 16;

/**
 * The lease tokens a stream pushed and has not seen settled through it, as one Set
 * per push, so that a stream that ends can release its leases at once. A push's acks
 * empty its Set within milliseconds, and the Set dies young.
 *
 * One Set for the stream's whole life, added to on every push and deleted from on every
 * ack, does not: V8 replaces a Set's table as it grows and shrinks, and links each old
 * table to its successor. Once a young-generation GC has promoted one table (the stream
 * is long-lived, so its current table is, sooner or later), that link keeps every later
 * table, and every token those tables held, alive through each young-generation GC
 * until a full one (docs/performance.md, "Long-lived Maps and Sets that churn").
 *
 * Past `limit` tokens the stream asks the store which of them are still leased and
 * forgets the others (`overLimit`, `all`, `forget`): a worker that settles by unary
 * calls, not on this stream, leaves its tokens here. When more than `limit` are still
 * leased (a client that keeps granting credits and never settles), `trim` forgets the
 * oldest pushes': their leases expire and the reaper takes them back, as for a stream
 * that broke without a release. Tokens never number more than twice `limit`, however
 * long a check takes.
 */
export class HeldTokens {
  private sets: Set<string>[] = [];
  private count = 0;

  constructor(private readonly limit: number) {}

  /** Tracks one push's tokens. */
  add(tokens: readonly string[]): void {
    if (tokens.length === 0) return;
    if (this.sets.length >= MAX_SETS) {
      const [second] = this.sets.splice(1, 1) as [Set<string>];
      for (const t of second) this.sets[0]!.add(t);
    }
    const set = new Set(tokens);
    this.sets.push(set);
    this.count += set.size;
    this.dropOldest(2 * this.limit);
  }

  /** More tokens than `limit`: time to ask which are still leased. */
  get overLimit(): boolean {
    return this.count > this.limit;
  }

  /** Every token tracked, oldest push first; they stay tracked. */
  all(): string[] {
    return this.sets.flatMap((set) => [...set]);
  }

  /** Stops tracking these tokens (settled elsewhere, or expired). */
  forget(tokens: Iterable<string>): void {
    for (const token of tokens) this.delete(token);
  }

  /** Forgets the oldest pushes until at most `limit` tokens are left; returns how many went. */
  trim(): number {
    return this.dropOldest(this.limit);
  }

  /** The newest push is kept even when it alone is over `max`. */
  private dropOldest(max: number): number {
    let dropped = 0;
    while (this.count > max && this.sets.length > 1) {
      const n = this.sets.shift()!.size;
      this.count -= n;
      dropped += n;
    }
    return dropped;
  }

  /** Stops tracking `token` (settled, or not ours); false when it was not tracked. */
  delete(token: string): boolean {
    // acks come mostly in push order: the oldest push is searched first
    for (let i = 0; i < this.sets.length; i++) {
      const set = this.sets[i]!;
      if (!set.delete(token)) continue;
      this.count--;
      if (set.size === 0) this.sets.splice(i, 1);
      return true;
    }
    return false;
  }

  get size(): number {
    return this.count;
  }

  /** Every token still tracked, which are then tracked no more. */
  takeAll(): string[] {
    const all = this.all();
    this.sets = [];
    this.count = 0;
    return all;
  }
}
