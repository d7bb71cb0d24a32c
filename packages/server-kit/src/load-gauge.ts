import { performance, type EventLoopUtilization } from "node:perf_hooks";

/**
 * How busy this process's event loop has been lately: its utilisation (the share of
 * wall time it spent running callbacks rather than waiting for I/O, 0–1) over the
 * last full period, or over the period in progress when that is busier. A process
 * sharing its cores with others counts the time it was runnable but not running as
 * busy too, so the figure rises with CPU contention as well as with its own work.
 */
export class LoadGauge {
  private readonly timer: NodeJS.Timeout;
  private mark: EventLoopUtilization;
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

  /** Utilisation, 0–1 (see the class). */
  busy(): number {
    const current = performance.eventLoopUtilization(this.mark);
    // a period only just begun says little: weigh it only once it is a fifth gone
    const started = current.idle + current.active >= this.periodMs / 5;
    return Math.max(this.last, started ? current.utilization : 0);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
