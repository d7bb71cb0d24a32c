/** An unbounded async queue: producers push, one consumer iterates; ends on close or fail. */
export class Channel<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private wake: (() => void) | undefined;
  private closed = false;
  private failure: { error: unknown } | undefined;

  push(item: T): void {
    if (this.closed) return;
    this.items.push(item);
    this.signal();
  }

  /** Ends the iteration once the queued items are consumed. */
  close(): void {
    this.closed = true;
    this.signal();
  }

  /** Ends the iteration with `error` after the queued items. */
  fail(error: unknown): void {
    if (this.closed) return;
    this.failure = { error };
    this.closed = true;
    this.signal();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Items pushed and not yet taken by the consumer. */
  get queued(): number {
    return this.items.length;
  }

  /** Takes out the items not yet consumed (the consumer has gone: they never will be). */
  takeQueued(): T[] {
    return this.items.splice(0);
  }

  /** Takes out the items not yet consumed for which `which` holds; the rest stay in order. */
  takeQueuedWhere(which: (item: T) => boolean): T[] {
    const taken: T[] = [];
    let kept = 0;
    for (const item of this.items) {
      if (which(item)) taken.push(item);
      else this.items[kept++] = item;
    }
    this.items.length = kept;
    return taken;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      const next = this.items.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.failure) throw this.failure.error;
      if (this.closed) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private signal(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
