import { messageOf } from "@codeq/common";
import type { Logger } from "@codeq/server-kit";
import {
  finishDefaultChange,
  finishedDefaultSummary,
  updateMap,
  type MapCache,
  type MapSource,
  type Migration,
} from "@codeq/shardmap";
import type { ShardFence } from "./fence";

/** How often an unfinished change is tried again, ms. */
const RETRY_MS = 2_000;

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
 * command it took meanwhile moves to the new default, whose mover is this shard's).
 * Tried on every map change and every RETRY_MS while unfinished; one try at a time.
 */
export class DefaultChangeFinisher {
  /** When this worker first saw the unfinished change, ms. */
  private seenAtMs: number | undefined;
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly parts: DefaultFinisherParts) {}

  /** Starts watching the map; the answer stops it (`stop` waits for a try under way). */
  start(): () => void {
    const off = this.parts.cache.onChange(() => this.check());
    this.timer = setInterval(() => this.check(), RETRY_MS);
    this.timer.unref();
    this.check();
    return off;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }

  private check(): void {
    const { cache, shard, afterMs } = this.parts;
    if (this.stopped || this.running || cache.version === 0) return;
    if (cache.current().formerDefault !== shard) {
      this.seenAtMs = undefined;
      return;
    }
    this.seenAtMs ??= Date.now();
    if (Date.now() - this.seenAtMs < afterMs) return;
    this.running = this.finish()
      .catch((err: unknown) =>
        this.parts.logger.warn(
          { err: messageOf(err) },
          "the change of the default shard away from this shard is not finished yet; trying again",
        ),
      )
      .finally(() => (this.running = undefined));
  }

  private async finish(): Promise<void> {
    const { cache, source, fence, shard, logger } = this.parts;
    // what was admitted under a map from before the change has reached the store
    await fence.settled();
    const held = await this.parts.commandsHeld();
    const actor = `shard@${shard}`;
    let started: Migration[] = [];
    const { changed, map } = await updateMap(
      source,
      (current) => {
        const finished = finishDefaultChange(current, shard, held, actor);
        started = finished?.started ?? [];
        return finished?.draft;
      },
      { actor, action: "SetDefaultShard", summary: finishedDefaultSummary(shard) },
    );
    if (!changed) return;
    logger.info(
      {
        version: map.version,
        migrations: started.map((m) => `${m.id}: ${m.command} ${m.from} → ${m.to}`),
      },
      "finished the change of the default shard away from this shard",
    );
    await cache.refresh();
  }
}
