/** Pushes a stream keeps apart, at most; past it a push joins the newest. */
const MAX_SETS = 64;

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
    const newest = this.sets.length >= MAX_SETS ? this.sets[this.sets.length - 1] : undefined;
    if (newest) for (const t of tokens) newest.add(t);
    else this.sets.push(new Set(tokens));
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
