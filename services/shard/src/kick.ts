/**
 * What the notifier's `wait` can be cancelled by: an AbortSignal (a call's, the
 * shard's draining) or a `Kick`.
 */
export interface Cancel {
  readonly aborted: boolean;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}

/**
 * A one-shot wake-up: a lease stream's pump waits on one between leases, and a new
 * one is made every time it fires, hundreds of times a second per busy stream.
 *
 * Not an AbortController: in Node 20 an AbortSignal is never collected by a
 * young-generation GC, so every one, its listeners and all they hold (the parked
 * waiter, its promise) went to old space, and the worker ran a full GC every second
 * or two at moderate load (docs/performance.md, "Garbage collection settings").
 */
export class Kick implements Cancel {
  private fired = false;
  private listeners: Array<() => void> = [];

  get aborted(): boolean {
    return this.fired;
  }

  /** Fires once: calls every listener; later calls do nothing. */
  fire(): void {
    if (this.fired) return;
    this.fired = true;
    const listeners = this.listeners;
    this.listeners = [];
    for (const listener of listeners) listener();
  }

  /** Resolves when fired (at once if it has). */
  wait(): Promise<void> {
    if (this.fired) return Promise.resolve();
    return new Promise((resolve) => this.listeners.push(resolve));
  }

  /** Every listener is called once, so `once` is implied. */
  addEventListener(_type: "abort", listener: () => void): void {
    if (!this.fired) this.listeners.push(listener);
  }

  removeEventListener(_type: "abort", listener: () => void): void {
    const at = this.listeners.indexOf(listener);
    if (at >= 0) this.listeners.splice(at, 1);
  }
}

/**
 * A Kick fired when the first of `signals` aborts (at once if one has): what
 * `AbortSignal.any` does, without a new AbortSignal per call. `dispose` takes its
 * listeners off the signals, which outlive it.
 */
export function onFirstAbort(signals: readonly AbortSignal[]): { kick: Kick; dispose(): void } {
  const kick = new Kick();
  const fire = () => kick.fire();
  for (const signal of signals) {
    if (signal.aborted) kick.fire();
    else signal.addEventListener("abort", fire, { once: true });
  }
  return {
    kick,
    dispose: () => {
      for (const signal of signals) signal.removeEventListener("abort", fire);
    },
  };
}
