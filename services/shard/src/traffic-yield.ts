import type { Logger } from "@codeq/server-kit";
import { fillingSide, type Migration } from "@codeq/shardmap";

/** The first wait while yielding to a busy shard worker, ms (then doubling). */
const YIELD_FIRST_MS = 50;
/** The longest the mover yields before one batch, ms: a busy target slows a move, never stops it. */
const YIELD_MAX_MS = 1000;

/** When and how the mover yields to live traffic (part of MoverOptions). */
export interface TrafficYieldOptions {
  /**
   * Event-loop utilisation (0–1) above which the mover yields to live traffic: before
   * each batch, while the receiving shard worker (it reports its own with every
   * ImportTasks answer) or this one is busier, it waits, asking the target again
   * after 50, 100, 200… ms, for at most YIELD_MAX_MS per batch (1 or more: never yields).
   */
  readonly yieldAbove?: number;
  /** This shard worker's own event-loop utilisation, 0–1 (a `LoadGauge`). */
  readonly busy?: () => number;
  /** Called with each wait spent yielding, ms (a metric). */
  readonly onYield?: (ms: number) => void;
}

/**
 * The mover's yielding to live traffic: before each batch it waits while the target
 * or this shard worker is busier than `yieldAbove` (see TrafficYieldOptions). It logs when
 * it starts yielding and when it is back to its duty cycle, once each.
 */
export class TrafficYield {
  private yielding = false;

  constructor(
    private readonly options: TrafficYieldOptions,
    private readonly logger: Logger,
    /** Sleeps, or less when the mover stops. */
    private readonly sleep: (ms: number) => Promise<void>,
    private readonly stopped: () => boolean,
  ) {}

  /**
   * Waits while the target (its last reported `load`; asked with `probe` when unknown,
   * so a move's first batch waits for the target to take up the traffic the switch
   * sent it) or this shard worker is busier than `yieldAbove`, asking the target again
   * after 50, 100, 200… ms, for at most YIELD_MAX_MS. Returns the last load known.
   */
  async whileBusy(
    m: Migration,
    load: number | undefined,
    probe: () => Promise<number>,
  ): Promise<number | undefined> {
    const limit = this.options.yieldAbove ?? 1;
    if (limit >= 1) return load;
    const own = () => this.options.busy?.() ?? 0;
    // this worker busy is reason enough to wait: the target is asked only when it is not
    const look = async () => (own() > limit ? own() : Math.max(own(), (load = await probe())));
    let now = load === undefined ? await look() : Math.max(own(), load);
    const fields = { migration: m.id, to: fillingSide(m) };
    const since = Date.now();
    for (let wait = YIELD_FIRST_MS; now > limit; wait *= 2) {
      if (!this.yielding)
        this.logger.info({ ...fields, load: round(now) }, "mover yielding to live traffic");
      this.yielding = true;
      const left = YIELD_MAX_MS - (Date.now() - since);
      if (left <= 0 || this.stopped()) return load;
      const slept = Date.now();
      await this.sleep(Math.min(wait, left));
      this.options.onYield?.(Date.now() - slept);
      if (this.stopped()) return load;
      now = await look();
    }
    if (this.yielding)
      this.logger.info({ ...fields, load: round(now) }, "mover back to its duty cycle");
    this.yielding = false;
    return load;
  }
}

const round = (x: number) => Math.round(x * 100) / 100;
