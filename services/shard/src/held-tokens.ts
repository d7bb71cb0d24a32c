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
 * Past `limit` tokens the stream asks the store which of them are still leased
 * (`checkDue`, `all`, `checked`): a worker that settles by unary calls, not on this
 * stream, leaves its tokens here, and the check forgets them. When more than `limit`
 * of the checked tokens are still leased (a client that keeps granting credits and
 * never settles), the oldest of those are forgotten down to `limit`: their leases
 * expire and the reaper takes them back, as for a stream that broke without a
 * release. After a check the next is due once half of `limit` more has been pushed,
 * so such a client does not have every push checked. Tokens never number more than
 * twice `limit`: past that `add` forgets the oldest pushes, however long a check takes.
 */
export class HeldTokens {
  private sets: Set<string>[] = [];
  private count = 0;
  /** A check is due once more tokens than this are tracked. */
  private checkAbove: number;

  constructor(private readonly limit: number) {
    this.checkAbove = limit;
  }

  /**
   * Tracks one push's tokens. Returns how many of the oldest were forgotten to stay
   * within twice `limit` (0 unless checks fall far behind).
   */
  add(tokens: readonly string[]): number {
    if (tokens.length === 0) return 0;
    if (this.sets.length >= MAX_SETS) {
      const [second] = this.sets.splice(1, 1) as [Set<string>];
      for (const t of second) this.sets[0]!.add(t);
    }
    const set = new Set(tokens);
    this.sets.push(set);
    this.count += set.size;
    let dropped = 0;
    // the newest push is kept even when it alone is over the cap
    while (this.count > 2 * this.limit && this.sets.length > 1) {
      const n = this.sets.shift()!.size;
      this.count -= n;
      dropped += n;
    }
    return dropped;
  }

  /** Time to ask the store which tokens are still leased. */
  get checkDue(): boolean {
    return this.count > this.checkAbove;
  }

  /** Every token tracked, oldest push first; they stay tracked. */
  all(): string[] {
    return this.sets.flatMap((set) => [...set]);
  }

  /**
   * Takes a check's answer for `tokens` (as `all` gave them, oldest first): forgets
   * those no longer leased; while more than `limit` are tracked, forgets the oldest of
   * those still leased too, never one the check did not see. Returns how many still
   * leased were forgotten.
   */
  checked(tokens: readonly string[], leased: readonly boolean[]): number {
    const live: string[] = [];
    tokens.forEach((token, i) => (leased[i] ? live.push(token) : this.delete(token)));
    let forgotten = 0;
    for (const token of live) {
      if (this.count <= this.limit) break;
      if (this.delete(token)) forgotten++;
    }
    this.deferCheck();
    return forgotten;
  }

  /** After a check, answered or not: the next is due half of `limit` from here. */
  deferCheck(): void {
    this.checkAbove = Math.max(this.limit, this.count + Math.floor(this.limit / 2));
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
    this.checkAbove = this.limit;
    return all;
  }
}
