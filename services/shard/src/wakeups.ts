import {
  ScriptCode,
  type Delivery,
  type QueueEngine,
  type QueueRef,
  type SettleOutcome,
} from "@codeq/engine";
import type { BackgroundWork } from "./background";
import type { Metrics } from "./metrics";
import type { Notifier } from "./notifier";

/** The wake-ups after a lease or a failure that keep streams and the due loop on time. */
export class Wakeups {
  constructor(
    private readonly engine: QueueEngine,
    private readonly notifier: Notifier,
    private readonly background: BackgroundWork,
    private readonly metrics: Metrics,
  ) {}

  /** Counts deliveries and has the reaper look at the earliest deadline among them. */
  delivered(deliveries: readonly Delivery[]): void {
    if (deliveries.length === 0) return;
    this.metrics.delivered.inc(deliveries.length);
    this.background.wakeAt(deliveries[0]!.deadline);
  }

  /** Wakes waiters of queues whose tasks became ready, and the due loop for scheduled ones. */
  afterFailure(tokens: readonly string[], outs: readonly SettleOutcome[]): void {
    const ready = new Map<string, { queue: QueueRef; n: number }>();
    outs.forEach((o, i) => {
      if (o.code !== ScriptCode.Ok) return;
      if (o.state === "SCHEDULED") this.background.recheck();
      if (o.state !== "READY") return;
      const t = this.engine.decodeToken(tokens[i]!);
      if (!t) return;
      const key = `${t.command}:${t.tenant}`;
      const entry = ready.get(key) ?? { queue: { command: t.command, tenant: t.tenant }, n: 0 };
      entry.n++;
      ready.set(key, entry);
    });
    for (const { queue, n } of ready.values()) this.notifier.notify(queue, n);
  }
}
