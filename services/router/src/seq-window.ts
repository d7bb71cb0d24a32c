/**
 * Values keyed by sequence numbers that only grow, kept in that order: an array from
 * the oldest key still held, with a hole where a value was taken out of turn.
 *
 * It stands in for a `Map` that lives as long as a stream and is set and deleted once
 * per call. V8 replaces such a Map's hash table as it grows and shrinks and links each
 * old table to its successor, so once one table is promoted every later table, and every
 * value it held, survives each young-generation GC until a full one
 * (docs/performance.md, "Long-lived Maps and Sets that churn"). An array's storage is
 * replaced without such a link.
 *
 * Its size is the span from the oldest value held to the newest: one call the shard
 * sits on keeps the slots of every call after it until it is answered or times out (at
 * 1,200 calls a second and a 10 s timeout, 12,000 slots, walked once when it goes).
 */
export class SeqWindow<T extends object> {
  private slots: (T | undefined)[] = [];
  /** Index in `slots` of the oldest slot still in the window. */
  private head = 0;
  /** The seq of `slots[head]`. */
  private base = 0;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds `value` under `seq`, which must be greater than every seq added before. */
  set(seq: number, value: T): void {
    if (this.count === 0) this.reset(seq);
    const at = this.head + (seq - this.base);
    if (at < this.slots.length) throw new Error(`seq ${seq} is not past the window`);
    while (this.slots.length < at) this.slots.push(undefined); // skipped seqs, if any
    this.slots.push(value);
    this.count++;
  }

  get(seq: number): T | undefined {
    const at = this.head + (seq - this.base);
    return seq >= this.base && at < this.slots.length ? this.slots[at] : undefined;
  }

  /** Takes out the value under `seq`; false when there is none. */
  delete(seq: number): boolean {
    if (this.get(seq) === undefined) return false;
    this.slots[this.head + (seq - this.base)] = undefined;
    this.count--;
    while (this.head < this.slots.length && this.slots[this.head] === undefined) {
      this.head++;
      this.base++;
    }
    // drop the slots behind the window once they are half of it (a new, smaller array)
    if (this.head > 64 && this.head * 2 > this.slots.length) {
      this.slots = this.slots.slice(this.head);
      this.head = 0;
    }
    return true;
  }

  /** The oldest value held and its seq, or undefined when empty. */
  oldest(): { seq: number; value: T } | undefined {
    if (this.count === 0) return undefined;
    return { seq: this.base, value: this.slots[this.head]! };
  }

  /** Every value held, oldest first; the window is empty afterwards. */
  takeAll(): T[] {
    const all = this.slots.slice(this.head).filter((v): v is T => v !== undefined);
    this.reset(0);
    return all;
  }

  private reset(base: number): void {
    this.slots = [];
    this.head = 0;
    this.base = base;
    this.count = 0;
  }
}
