import { performance, type EventLoopUtilization } from "node:perf_hooks";

/**
 * How busy this process's event loop has been over the last period (a quarter second
 * by default): its utilisation, the share of wall time it spent running callbacks
 * rather than waiting for I/O, 0–1. The period in progress counts in full and the last
 * full one for the part the current one does not cover yet, so the figure slides
 * rather than jumping at each tick. Work that keeps the loop from getting back to
 * polling (CPU contention while running, not while waiting) counts as busy.
 */
export class LoadGauge {
  private readonly timer: NodeJS.Timeout;
  private mark: EventLoopUtilization;
  /** Utilisation of the last full period. */
  private last = 0;

  constructor(private readonly periodMs = 250) {
    this.mark = performance.eventLoopUtilization();
    this.timer = setInterval(() => {
      const now = performance.eventLoopUtilization();
      this.last = performance.eventLoopUtilization(now, this.mark).utilization;
      this.mark = now;
    }, periodMs);
    this.timer.unref();
  }

  /** Utilisation over the last period, 0–1 (see the class). */
  busy(): number {
    const current = performance.eventLoopUtilization(this.mark);
    const elapsed = current.idle + current.active;
    const before = Math.max(0, this.periodMs - elapsed);
    return (this.last * before + current.active) / (before + elapsed);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
