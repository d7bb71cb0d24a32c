/**
 * Pushes a stream keeps apart, at most. Past it the two oldest are merged: a Set of
 * tokens held that long changes rarely, and each new push keeps a Set of its own. An ack
 * for a token not held looks in at most this many Sets.
 */
const MAX_SETS = 16;

/**
 * The lease tokens a stream pushed and has not seen settled through it, as one Set
 * per push. A push's acks empty its Set within milliseconds, and the Set dies young.
 *
 * One Set for the stream's whole life, added to on every push and deleted from on every
 * ack, does not: V8 replaces a Set's table as it grows and shrinks, and links each old
 * table to its successor. Once a young-generation GC has promoted one table (the stream
 * is long-lived, so its current table is, sooner or later), that link keeps every later
 * table, and every token those tables held, alive through each young-generation GC
 * until a full one (docs/performance.md, "Long-lived Maps and Sets that churn").
 */
export class HeldTokens {
  private sets: Set<string>[] = [];

  /** Tracks one push's tokens. */
  add(tokens: readonly string[]): void {
    if (tokens.length === 0) return;
    if (this.sets.length >= MAX_SETS) {
      const [oldest, next] = this.sets.splice(0, 2) as [Set<string>, Set<string>];
      for (const t of next) oldest.add(t);
      this.sets.unshift(oldest);
    }
    this.sets.push(new Set(tokens));
  }

  /** Stops tracking `token` (settled, or not ours); false when it was not tracked. */
  delete(token: string): boolean {
    // acks come mostly in push order: the oldest push is searched first
    for (let i = 0; i < this.sets.length; i++) {
      const set = this.sets[i]!;
      if (!set.delete(token)) continue;
      if (set.size === 0) this.sets.splice(i, 1);
      return true;
    }
    return false;
  }

  get size(): number {
    let n = 0;
    for (const set of this.sets) n += set.size;
    return n;
  }

  /** Every token still tracked, which are then tracked no more. */
  takeAll(): string[] {
    const all = this.sets.flatMap((set) => [...set]);
    this.sets = [];
    return all;
  }
}
