import { setMaxListeners } from "node:events";

/** starting → serving → draining → stopped; never backwards. */
export type LifecycleState = "starting" | "serving" | "draining" | "stopped";

const order: Record<LifecycleState, number> = { starting: 0, serving: 1, draining: 2, stopped: 3 };

/**
 * The share of a service's grace period (`graceMs`) a stream may spend draining at
 * shutdown (settling what its worker holds, with nothing new pushed). The rest is left
 * for releasing what is still held and for the calls still running.
 */
export const STREAM_DRAIN_SHARE = 0.8;

/** The explicit lifecycle of a process, with an AbortSignal that fires when draining begins. */
export class Lifecycle {
  private current: LifecycleState = "starting";
  private readonly draining = new AbortController();

  constructor() {
    // every open stream and long poll listens on it: thousands is normal, not a leak
    setMaxListeners(0, this.draining.signal);
  }
  private readonly listeners = new Set<(state: LifecycleState) => void>();

  get state(): LifecycleState {
    return this.current;
  }

  /** Aborted once the process starts draining: long polls and streams end on it. */
  get signal(): AbortSignal {
    return this.draining.signal;
  }

  /** Moves forward to `next`; moving backwards or sideways is ignored and returns false. */
  to(next: LifecycleState): boolean {
    if (order[next] <= order[this.current]) return false;
    this.current = next;
    if (next === "draining" || next === "stopped") this.draining.abort();
    for (const listener of this.listeners) listener(next);
    return true;
  }

  onChange(listener: (state: LifecycleState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
