import { messageOf } from "@codeq/common";
import type { Logger } from "@codeq/server-kit";
import {
  finishDefaultChange,
  finishedDefaultSummary,
  formerDefaultActor,
  updateMap,
  type MapCache,
  type MapSource,
  type Migration,
} from "@codeq/shardmap";
import type { ShardFence } from "./fence";

/** How often an unfinished change is looked at, ms. */
const CHECK_MS = 2_000;
/** The longest wait after failed tries (doubling from CHECK_MS), ms. */
const MAX_BACKOFF_MS = 30_000;

export interface DefaultFinisherParts {
  readonly shard: string;
  readonly cache: MapCache;
  readonly source: MapSource;
  readonly fence: ShardFence;
  /** The commands this shard keeps tasks of, read afresh (a read begun now). */
  readonly commandsHeld: () => Promise<string[]>;
  readonly logger: Logger;
  /**
   * How long after this worker first sees its shard as the former default it finishes
   * the change itself, ms: the SetDefaultShard call that made it finishes it at once
   * as a rule, and says what it moved.
   */
  readonly afterMs: number;
}

/**
 * Finishes a change of the default shard away from this shard (the map's
 * `formerDefault`) that the SetDefaultShard call left unfinished: the worker it asked
 * did not confirm in time, the control store did not take the last write, the caller
 * went away. This worker holds the map that changed the default once it sees the
 * change, so its fencing refuses new tasks of the queues that follow the default from
 * then on; it waits for the enqueues admitted before (ShardFence.settled), reads which
 * commands it holds, and writes the change's last step (`finishDefaultChange`: each
 * command it took meanwhile moves to the new default, by this shard's mover).
 * Looked at on every map change and every CHECK_MS; one try at a time, and after a
 * failed try the next waits twice as long (up to MAX_BACKOFF_MS). Nothing is tried
 * while the control store is away (the map held says so): the write could not land.
 */
export class DefaultChangeFinisher {
  /** When this worker first saw the unfinished change, ms. */
  private seenAtMs: number | undefined;
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Looks again when a wait (afterMs, a backoff) is over. */
  private due: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Aborted by `stop`: a try waiting for stores (a store that does not answer) ends. */
  private readonly stopping = new AbortController();
  /** Failed tries in a row, and when the next may start. */
  private failures = 0;
  private nextTryAtMs = 0;

  constructor(private readonly parts: DefaultFinisherParts) {}

  /** Starts watching the map; the answer stops it (`stop` waits for a try under way). */
  start(): () => void {
    const off = this.parts.cache.onChange(() => this.check());
    this.timer = setInterval(() => this.check(), CHECK_MS);
    this.timer.unref();
    this.check();
    return off;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    clearInterval(this.timer);
    clearTimeout(this.due);
    await this.running;
  }

  private check(): void {
    const { cache, shard, afterMs } = this.parts;
    if (this.stopped || this.running || cache.version === 0) return;
    if (cache.current().formerDefault !== shard) {
      this.seenAtMs = undefined;
      this.failures = 0;
      this.nextTryAtMs = 0;
      return;
    }
    const now = Date.now();
    this.seenAtMs ??= now;
    const dueAtMs = Math.max(this.seenAtMs + afterMs, this.nextTryAtMs);
    if (now < dueAtMs) {
      // looked at again when due, not at the next CHECK_MS
      clearTimeout(this.due);
      this.due = setTimeout(() => this.check(), dueAtMs - now);
      this.due.unref();
      return;
    }
    if (cache.status().lastError) return;
    this.running = this.finish()
      .then(
        () => {
          this.failures = 0;
          this.nextTryAtMs = 0;
        },
        (err: unknown) => {
          if (this.stopped) return;
          this.failures++;
          this.nextTryAtMs =
            Date.now() + Math.min(CHECK_MS * 2 ** (this.failures - 1), MAX_BACKOFF_MS);
          const fields = { err: messageOf(err), failures: this.failures };
          const message =
            "the change of the default shard away from this shard is not finished yet; trying again";
          // said once per run of failures; the rest at debug
          if (this.failures === 1) this.parts.logger.warn(fields, message);
          else this.parts.logger.debug(fields, message);
        },
      )
      .finally(() => (this.running = undefined));
  }

  private async finish(): Promise<void> {
    const { cache, source, fence, shard, logger } = this.parts;
    // what was admitted under a map from before the change has reached the store
    await fence.settled(this.stopping.signal);
    const held = await this.parts.commandsHeld();
    const actor = formerDefaultActor(shard);
    let started: Migration[] = [];
    const { changed, map } = await updateMap(
      source,
      (current) => {
        // a worker that is stopping starts no move
        const finished = this.stopped
          ? undefined
          : finishDefaultChange(current, shard, held, actor);
        started = finished?.started ?? [];
        return finished?.draft;
      },
      { actor, action: "SetDefaultShard", summary: finishedDefaultSummary(shard) },
    );
    if (!changed) return;
    this.seenAtMs = undefined;
    logger.info(
      {
        version: map.version,
        migrations: started.map((m) => `${m.id}: ${m.command} ${m.from} → ${m.to}`),
      },
      "finished the change of the default shard away from this shard",
    );
    // (the announcement brings it too, or the next poll)
    await cache.refresh().catch(() => undefined);
  }
}
