import { setTimeout as sleep } from "node:timers/promises";
import { messageOf } from "@codeq/common";
import type { QueueEngine, QueueRef } from "@codeq/engine";
import type { Logger } from "@codeq/server-kit";
import {
  drainingSide,
  emptyCounts,
  entry,
  fillingSide,
  isUnfinished,
  updateMap,
  draftOf,
  type MapCache,
  type MapSource,
  type Migration,
  type MigrationCounts,
  type MigrationStore,
  type ShardMap,
} from "@codeq/shardmap";
import { exportedToWire } from "@codeq/wire";
import type { PeerCall, PeerShards } from "./peers";
import { movedQueues, PutBack } from "./put-back";
import { firstBatch, nextBatch } from "./batch-size";
import { bindKeys, reservedThere } from "./move-peer";
import { MoveProgress, tally } from "./move-progress";
import { TargetPlacements } from "./target-placement";
import { TrafficYield, type TrafficYieldOptions } from "./traffic-yield";

export interface MoverOptions extends TrafficYieldOptions {
  /** The largest export/import batch (a pass starts small and doubles: batch-size.ts). */
  readonly batch: number;
  /**
   * Most bytes of tasks, as stored, one import request carries (exportBatch's bound, a
   * larger first task alone; MOVE_BATCH_BYTES when unset): within what the target accepts.
   */
  readonly batchBytes?: number;
  /** Pause between passes while a migration of this shard runs, ms. */
  readonly intervalMs: number;
  /**
   * The share of wall time the mover may spend moving, percent (100: no pause). After
   * each batch it rests in proportion to how long the batch took, so it yields more
   * the busier the stores and shard workers are, whatever the hardware.
   */
  readonly dutyPercent?: number;
  /** Deadline of one ImportTasks call, ms. */
  readonly importTimeoutMs: number;
  /** The other shard workers (their owner closes them). */
  readonly peers: PeerShards;
  /** Resolves once every store (enqueue, import) admitted before the call has ended (ShardFence.settled). */
  readonly storesSettled?: (signal: AbortSignal) => Promise<void>;
}

/** How often a long pass reports its progress, ms. */
const PROGRESS_EVERY_MS = 500;

/**
 * A move's first batch goes no sooner than this after the switch, ms: the routers and
 * workers are moving the live traffic and the streams' credits to the target, whose
 * load the mover cannot see yet (it has just begun), and old tasks can wait a second.
 */
const SWITCH_SETTLE_MS = 1000;

/**
 * The migration mover of one shard (SPEC §5). For every unfinished migration that
 * drains this shard (the source while copying or draining, the target while
 * aborting) it moves the queue's READY, SCHEDULED and DEAD tasks, with their live
 * idempotency keys, to the other side in batches: export reserves a batch here,
 * ImportTasks stores it there (idempotent by id), and only then is it deleted here.
 * A crash anywhere resumes with the same reserved batch, so nothing is lost or
 * stored twice. LEASED tasks stay until settled or expired, then move like the
 * rest. When this shard holds nothing of the queue any more, the migration is
 * finished: recorded with its progress, and removed from the map.
 *
 * Each pass first puts back the batches reserved here for moves away from this shard
 * that will not send them (`PutBack`: an abort, or a move that left the map unseen).
 * While copying, each batch goes to the head of the target's lists where the target
 * honours that (`TargetPlacements`).
 *
 * One pass at a time; passes run on map changes and every `intervalMs` while this
 * shard drains something. Progress goes to the control store for GetMigration.
 */
export class Mover {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  /** Aborted when the mover stops (it also cuts a rest short). */
  private readonly stopping = new AbortController();
  private readonly putBack: PutBack;
  private readonly placements: TargetPlacements;
  private readonly progress: MoveProgress;
  private readonly traffic: TrafficYield;

  constructor(
    private readonly shard: string,
    private readonly engine: QueueEngine,
    private readonly cache: MapCache,
    private readonly source: MapSource,
    private readonly store: MigrationStore,
    private readonly logger: Logger,
    private readonly options: MoverOptions,
    /** Called after tasks were restored to this shard's indexes (wake the streams). */
    onRestored: (queue: QueueRef, n: number) => void = () => undefined,
  ) {
    this.putBack = new PutBack({
      shard,
      engine,
      store,
      logger,
      peers: options.peers,
      peerCall: this.peerCall,
      stopped: () => this.stopping.signal.aborted,
      onRestored,
    });
    this.placements = new TargetPlacements(logger);
    this.progress = new MoveProgress(store, this.placements);
    this.traffic = new TrafficYield(
      options,
      logger,
      (ms) => this.sleep(ms),
      () => this.stopping.signal.aborted,
    );
  }

  start(): () => void {
    const off = this.cache.onChange(() => this.kick());
    this.kick();
    return off;
  }

  /** Runs a pass now (or right after the one in progress). */
  kick(): Promise<void> {
    if (this.stopping.signal.aborted) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.pass();
        } while (this.again && !this.stopping.signal.aborted);
      } finally {
        this.running = undefined;
        this.schedule();
      }
    })();
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  private schedule(): void {
    if (this.stopping.signal.aborted) return;
    if (!this.putBack.pending && !this.mine(this.cache.current()).length) return;
    this.timer = setTimeout(() => void this.kick(), this.options.intervalMs);
    this.timer.unref();
  }

  /** Unfinished migrations this shard drains. */
  private mine(map: ShardMap): Migration[] {
    return map.migrations.filter((m) => isUnfinished(m) && drainingSide(m) === this.shard);
  }

  private async pass(): Promise<void> {
    let map: ShardMap;
    try {
      map = this.cache.current();
    } catch {
      return;
    }
    await this.putBack.run(map);
    this.placements.keepOnly(map);
    for (const m of this.mine(map)) {
      if (this.stopping.signal.aborted) return;
      try {
        await this.drain(map, m);
      } catch (err) {
        const message = messageOf(err);
        this.logger.warn({ migration: m.id, err: message }, "migration pass failed; retrying");
        await this.progress.save(m, undefined, 0, message).catch(() => undefined);
      }
    }
  }

  private async drain(map: ShardMap, m: Migration): Promise<void> {
    const target = fillingSide(m);
    const endpoint = entry(map.shards, target)?.endpoint;
    if (!endpoint) throw new Error(`shard ${target} is not in the map`);
    const client = this.options.peers.client(endpoint);
    const moved = await this.progress.resume(m);
    const started = Date.now();
    let count = 0;
    let reported = started;
    // an abort moves nothing live: its tasks go home at once
    if (m.state !== "aborting") await this.sleep(m.startedAtMs + SWITCH_SETTLE_MS - Date.now());
    const queues = await movedQueues(this.engine, map, m);
    /** The target's load: reported with every import, asked before the pass's first batch. */
    let load: number | undefined;
    let size = firstBatch(this.options.batch);
    for (const q of queues) {
      // a queue with nothing to move (only leased tasks left) costs neither a wait nor a call there
      if (!(await this.movable(q))) continue;
      const target = { command: q.command, tenant: q.tenant, migrationId: m.id };
      /** Asks the target's load (and placement) with an import of nothing (no store call there). */
      const probe = async () => {
        const res = await client.importTasks({ ...target, tasks: [] }, this.peerCall());
        if (this.placements.heard(m, res.placesReadyAtHead)) await this.progress.keepAppending(m);
        return res.busy;
      };
      for (;;) {
        if (!this.unchanged(m)) return;
        if (Date.now() - reported >= PROGRESS_EVERY_MS) {
          // live progress for GetMigration while a long pass runs
          reported = Date.now();
          await this.progress.save(m, undefined, count / ((reported - started) / 1000));
        }
        load = await this.traffic.whileBusy(m, load, probe);
        // stopped, aborted or finished meanwhile: the next pass sees the new state
        if (!this.unchanged(m)) return;
        // the first batch to a target's head waits to know that it honours the head
        if (this.placements.unknown(m)) await probe();
        const placement = this.placements.of(m);
        const batchStarted = Date.now();
        const requested = size;
        const batch = await this.engine.exportBatch(
          q,
          requested,
          this.options.batchBytes,
          placement,
        );
        if (batch.length === 0) break;
        const res = await client.importTasks(
          {
            ...target,
            tasks: batch.map(exportedToWire),
            readyAtHead: placement === "head",
          },
          this.peerCall(),
        );
        load = res.busy;
        if (this.placements.heard(m, res.placesReadyAtHead)) await this.progress.keepAppending(m);
        size = nextBatch(size, load > (this.options.yieldAbove ?? 1), this.options.batch);
        const held = new Set([...res.imported, ...res.alreadyPresent]);
        await this.engine.confirmExport(
          q,
          batch.map((e) => e.task.id).filter((id) => held.has(id)),
          // sent home: no longer held here, whatever this migration's imports recorded
          m.state === "aborting" ? m.id : undefined,
        );
        count += tally(moved, batch, held);
        // what the target refused stays reserved here and would come back at once: the
        // pass ends, saying so in the migration's last error, and the next one retries
        const refused = batch.find((e) => !held.has(e.task.id));
        if (refused)
          throw new Error(
            `shard ${fillingSide(m)} refused ${batch.length - held.size} of ${batch.length} tasks of ${q.command}/${q.tenant} (the first: ${refused.task.id}, ${refused.task.state}); they stay reserved here and are offered again every pass`,
          );
        // a short batch may have been cut by bytes (one request's worth, exportBatch):
        // the queue is done only when an export finds nothing
        await this.rest(Date.now() - batchStarted);
      }
    }
    // a store admitted under a map from before this move can reach the store after the
    // pass's last export (ShardFence): the count waits for those, and lists the queues
    // again for one that such a store began
    await this.options.storesSettled?.(this.stopping.signal).catch(() => undefined);
    if (this.stopping.signal.aborted) return;
    const counted = await movedQueues(this.engine, map, m);
    const remaining = emptyCounts();
    let moving = 0;
    for (const q of counted) {
      const s = await this.engine.stats(q);
      remaining.ready += s.ready;
      remaining.scheduled += s.scheduled;
      remaining.dead += s.dead;
      remaining.leased += s.leased;
      moving += s.moving;
    }
    const seconds = Math.max((Date.now() - started) / 1000, 0.001);
    await this.progress.save(m, remaining, count / seconds);
    const left = remaining.ready + remaining.scheduled + remaining.dead + remaining.leased + moving;
    if (left === 0) {
      if (!this.unchanged(m)) return;
      // an abort is over once the source also holds no batch it reserved to move here:
      // it puts it back when it sees the abort (`restore`), unless its import here is
      // still answered in time (`import`: the batch then came home that way)
      const reserved =
        m.state === "aborting"
          ? await reservedThere(client, m, () => this.cache.current(), this.peerCall)
          : 0;
      if (reserved > 0) {
        // (its mover puts them back: one that is off, or stopped, holds the abort here)
        const waiting = `waiting for shard ${target} to put back ${reserved} tasks it reserved to move here`;
        await this.progress.save(m, remaining, count / seconds, waiting);
        return;
      }
      // keys of tasks that did not move (completed here) must still deduplicate there
      moved.idempotencyKeys += await bindKeys(client, this.engine, m, counted, this.peerCall);
      await this.finish(m, remaining);
    } else if (m.state === "copying" && left === remaining.leased)
      await this.setState(m, "draining");
  }

  /** Rests after a batch that took `busyMs` (see `dutyPercent`). */
  private async rest(busyMs: number): Promise<void> {
    const duty = this.options.dutyPercent ?? 100;
    if (duty < 100) await this.sleep((busyMs * (100 - duty)) / duty);
  }

  /** True while the mover runs and `m` is in the map held, in the same state. */
  private unchanged(m: Migration): boolean {
    if (this.stopping.signal.aborted) return false;
    try {
      return this.cache.current().migrations.some((x) => x.id === m.id && x.state === m.state);
    } catch {
      return false;
    }
  }

  /** The queue holds tasks to move (or a batch reserved by an earlier pass). */
  private async movable(q: QueueRef): Promise<boolean> {
    const s = await this.engine.stats(q);
    return s.ready + s.scheduled + s.dead + s.moving > 0;
  }

  /** Call options of a call to another shard worker: its deadline, `importTimeoutMs` away. */
  private readonly peerCall: PeerCall = () => ({
    deadline: new Date(Date.now() + this.options.importTimeoutMs),
  });

  /** Sleeps `ms`, or less when the mover stops. */
  private async sleep(ms: number): Promise<void> {
    if (ms <= 0 || this.stopping.signal.aborted) return;
    await sleep(ms, undefined, { signal: this.stopping.signal }).catch(() => undefined);
  }

  private async setState(m: Migration, state: Migration["state"]): Promise<void> {
    await updateMap(
      this.source,
      (map) => {
        const i = map.migrations.findIndex((x) => x.id === m.id && x.state === m.state);
        if (i < 0) return undefined;
        const migrations = [...map.migrations];
        migrations[i] = { ...map.migrations[i]!, state, updatedAtMs: Date.now() };
        return { ...draftOf(map), migrations };
      },
      {
        actor: `mover@${this.shard}`,
        action: "MigrationDraining",
        summary: `${m.id}: only leased tasks remain on ${this.shard}`,
      },
    );
    // the next pass places what becomes ready here from now on at the target's tail
    // (placementOf): it must not wait for the announcement (or the poll, if that is lost)
    await this.cache.refresh();
  }

  /** Records the finished migration, then takes it off the map. */
  private async finish(m: Migration, remaining: MigrationCounts): Promise<void> {
    const state = m.state === "aborting" ? "aborted" : "completed";
    const finishedAtMs = Date.now();
    await this.store.recordFinished({
      migration: { ...m, state, finishedAtMs, updatedAtMs: finishedAtMs },
      progress: await this.progress.final(m, remaining, finishedAtMs),
    });
    const { changed } = await updateMap(
      this.source,
      (map) => {
        // an abort since the pass began is not a completion: the next pass sees it
        if (!map.migrations.some((x) => x.id === m.id && x.state === m.state)) return undefined;
        return { ...draftOf(map), migrations: map.migrations.filter((x) => x.id !== m.id) };
      },
      {
        actor: `mover@${this.shard}`,
        action: state === "aborted" ? "MigrationAborted" : "MigrationCompleted",
        summary: `${m.id}: ${m.command}${m.tenant ? `/${m.tenant}` : ""} ${m.from} → ${m.to} ${state}`,
      },
    );
    this.progress.forget(m);
    if (changed) this.logger.info({ migration: m.id, state }, "migration finished");
  }
}
