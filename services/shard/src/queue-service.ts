import { setTimeout as sleep } from "node:timers/promises";
import { ServerError, Status, type CallContext, type ServiceImplementation } from "nice-grpc";
import { TASK_ID_PATTERN, type QueueRef } from "@codeq/engine";
import {
  QueueServiceDefinition,
  sentAsGiven,
  type LeaseRequest,
  type LeaseResponse,
} from "@codeq/proto";
import {
  decodingSafely,
  identityFrom,
  requireRole,
  type Identity,
  type Lifecycle,
} from "@codeq/server-kit";
import { identityOptions } from "./config";
import { enqueueStream } from "./enqueue-stream";
import { onFirstAbort } from "./kick";
import { LeaseStreamSession } from "./lease-stream";
import type { QueueCore } from "./queue-core";
import { asServerErrors, invalid, seenMapVersion, withFencingTrailers } from "./status";
import { countsToWire, deliveryToWire, MAX_RESPONSE_BYTES_HEADER, taskToWire } from "@codeq/wire";
import {
  DEFAULT_REDRIVE_RATE,
  MAX_PURGE_TASKS,
  MAX_REDRIVE_RATE,
  MAX_REDRIVE_TASKS,
  NAME_PATTERN as NAME,
} from "@codeq/common";

function queueOf(identity: Identity, command: string): QueueRef {
  if (!command) throw invalid("command is required");
  if (!NAME.test(command)) throw invalid(`command must match ${NAME.source}`);
  return { command, tenant: identity.tenant };
}

function readerOf(identity: Identity): void {
  if (
    !identity.roles.has("producer") &&
    !identity.roles.has("worker") &&
    !identity.roles.has("admin")
  ) {
    throw new ServerError(
      Status.PERMISSION_DENIED,
      "reading tasks needs the producer, worker or admin role",
    );
  }
}

function limit(field: string, value: number, fallback: number, max: number): number {
  const v = value || fallback;
  if (v > max) throw invalid(`${field} must be at most ${max}, got ${value}`);
  return v;
}

/** A Lease's queues and lease duration, and how many tasks it may take, checked. */
function leaseArgs(core: QueueCore, identity: Identity, req: LeaseRequest) {
  const ask = core.leaseAsk(identity, req.commands, req.allTenants, req.leaseDurationMs);
  return { ask, max: limit("max_tasks", req.maxTasks, 1, core.config.maxBatch) };
}

/** A Lease that does not wait (forwarded on a router's stream): what is ready now, if anything. */
export async function leaseReady(
  core: QueueCore,
  identity: Identity,
  req: LeaseRequest,
): Promise<LeaseResponse> {
  if (req.waitMs > 0)
    throw invalid("a forwarded lease may not wait; send a waiting Lease as a call of its own");
  const { ask, max } = leaseArgs(core, identity, req);
  const got = await asServerErrors(() => core.lease(identity, ask, max, core.nextStart()));
  return { tasks: got.map(deliveryToWire) };
}

/**
 * codeq.v1.QueueService as a shard worker serves it: the streams' messages, which
 * carry every pushed task and every enqueue answer, and the answers of the unary calls
 * that carry tasks or one result per item, go out as built, without nice-grpc's copy
 * of each (see sentAsGiven); their types make every field required. (An EnqueueBatch
 * answer of 64 results: 6 µs to encode instead of 14–18.)
 */
export const ShardQueueService = decodingSafely(
  sentAsGiven(QueueServiceDefinition, "responseType", [
    "leaseStream",
    "enqueueStream",
    "enqueueBatch",
    "lease",
    "ack",
    "nack",
    "extend",
  ]),
);

/** codeq.v1.QueueService on one shard. */
export function queueService(
  core: QueueCore,
  lifecycle: Lifecycle,
): ServiceImplementation<typeof ShardQueueService> {
  const { config, engine, notifier } = core;
  const trust = identityOptions(config);
  const who = (ctx: CallContext) => identityFrom(ctx.metadata, trust);

  return {
    async enqueue(req, ctx) {
      const [result] = await withFencingTrailers(ctx, () =>
        core.enqueue(who(ctx), [req], seenMapVersion(ctx)),
      );
      if (result!.status!.code !== Status.OK)
        throw new ServerError(result!.status!.code, result!.status!.message);
      return { taskId: result!.taskId, duplicate: result!.duplicate, state: result!.state };
    },

    async enqueueBatch(req, ctx) {
      const identity = who(ctx);
      const results = await withFencingTrailers(ctx, () =>
        core.enqueue(identity, req.tasks, seenMapVersion(ctx)),
      );
      return { results };
    },

    async *enqueueStream(requests, ctx) {
      yield* enqueueStream(core, who(ctx), requests, lifecycle.signal, seenMapVersion(ctx));
    },

    async lease(req, ctx) {
      const identity = who(ctx);
      const { ask, max } = leaseArgs(core, identity, req);
      const wait = limit("wait_ms", req.waitMs, 0, config.maxLeaseWaitMs);
      // a monotonic clock: a wall clock stepped back would stretch the wait
      const until = performance.now() + wait;
      const topics = core.topics(identity, ask);
      const cancelled = onFirstAbort([ctx.signal, lifecycle.signal]);
      try {
        let woken: QueueRef | undefined;
        const start = core.nextStart();
        for (let round = 0; ; round++) {
          // woken because the caller left: nothing to lease for it (nor to give back);
          // woken for tasks first, it passes that wake-up on to the next waiter
          if (round > 0 && ctx.signal.aborted) {
            // (for as many tasks as it could have taken: too many wakes cost an empty
            // lease each, too few leave tasks ready until the re-wake)
            if (woken) notifier.notify(woken, max);
            return { tasks: [] };
          }
          const seen = notifier.version(topics);
          const got = await asServerErrors(() =>
            core.lease(identity, ask, max, start + round, woken),
          );
          if (got.length > 0 && ctx.signal.aborted) {
            // the caller left while we leased: give the tasks back rather than let them
            // expire (with the store away, giveBack keeps them and retries on its own)
            await core.giveBack(got.map((d) => d.token)).catch(() => undefined);
            return { tasks: [] };
          }
          if (got.length > 0 || performance.now() >= until || cancelled.kick.aborted)
            return { tasks: got.map(deliveryToWire) };
          woken = await notifier.wait(topics, seen, cancelled.kick, until - performance.now(), max);
        }
      } finally {
        cancelled.dispose();
      }
    },

    async *leaseStream(requests, ctx) {
      yield* new LeaseStreamSession(core, who(ctx), lifecycle.signal, ctx.signal).run(requests);
    },

    async ack(req, ctx) {
      return { results: await core.ack(who(ctx), req.items) };
    },

    async nack(req, ctx) {
      return { results: await core.nack(who(ctx), req.items) };
    },

    async extend(req, ctx) {
      return { results: await core.extend(who(ctx), req.items) };
    },

    async getTask(req, ctx) {
      const identity = who(ctx);
      readerOf(identity);
      const queue = queueOf(identity, req.command);
      if (!TASK_ID_PATTERN.test(req.taskId))
        throw invalid("task_id must be a 26-character task id");
      const task = await asServerErrors(() => engine.getTask(queue, req.taskId));
      if (!task)
        throw new ServerError(
          Status.NOT_FOUND,
          `no task ${req.taskId} in ${req.command} for this tenant`,
        );
      return { task: taskToWire(task) };
    },

    async queueStats(req, ctx) {
      const identity = who(ctx);
      readerOf(identity);
      const queue = queueOf(identity, req.command);
      const counts = countsToWire(await asServerErrors(() => engine.stats(queue)));
      return { total: counts, shards: [{ shard: engine.shard, counts }], unavailableShards: [] };
    },

    async listDead(req, ctx) {
      const identity = who(ctx);
      requireRole(identity, "admin", "ListDead");
      const queue = queueOf(identity, req.command);
      const size = limit("page_size", req.pageSize, 100, 1000);
      // a router filling one page from several shards lowers the bound, strictly
      const header = ctx.metadata.get(MAX_RESPONSE_BYTES_HEADER);
      const lowered = typeof header === "string" && /^\d{1,15}$/.test(header);
      const asked = lowered ? Number(header) : Infinity;
      const page = await asServerErrors(() =>
        engine.listDead(queue, size, req.pageToken || undefined, {
          maxBytes: Math.min(asked, config.maxResponseBytes),
          firstAlways: !lowered,
        }),
      );
      return {
        tasks: page.tasks.map(taskToWire),
        nextPageToken: page.cursor ?? "",
        unavailableShards: [],
      };
    },

    async redriveDead(req, ctx) {
      const identity = who(ctx);
      requireRole(identity, "admin", "RedriveDead");
      const queue = queueOf(identity, req.command);
      const max = limit("max_tasks", req.maxTasks, 100, MAX_REDRIVE_TASKS);
      const rate = limit(
        "rate_per_second",
        req.ratePerSecond,
        DEFAULT_REDRIVE_RATE,
        MAX_REDRIVE_RATE,
      );
      if (req.taskIds.length > MAX_REDRIVE_TASKS)
        throw invalid(`task_ids: at most ${MAX_REDRIVE_TASKS}`);
      let redriven = 0;
      let remaining = 0;
      const notFound: string[] = [];
      const ids = req.taskIds;
      // at most `rate` per second: after each chunk, the last one's too, wait as long
      // as its redrives take at that rate (nothing redriven, no wait), so a caller that
      // calls again at once (the CLI walks a DLQ so) keeps to the rate over its calls
      // as well; stop when the caller goes away
      for (let done = 0; done < (ids.length || max) && !ctx.signal.aborted;) {
        const chunk = Math.min(rate, (ids.length || max) - done);
        const out = await asServerErrors(() =>
          engine.redrive(queue, chunk, ids.length ? ids.slice(done, done + chunk) : undefined),
        );
        redriven += out.count;
        remaining = out.remaining;
        notFound.push(...out.notFound);
        if (out.count > 0) notifier.notify(queue, out.count);
        done += chunk;
        if (out.count > 0)
          await sleep((1000 * out.count) / rate, undefined, { signal: ctx.signal }).catch(
            () => undefined,
          );
        if (ids.length === 0 && out.count < chunk) break;
      }
      return { redriven, remaining, notFound };
    },

    async purgeDead(req, ctx) {
      const identity = who(ctx);
      requireRole(identity, "admin", "PurgeDead");
      const queue = queueOf(identity, req.command);
      const max = limit("max_tasks", req.maxTasks, 1000, MAX_PURGE_TASKS);
      if (req.taskIds.length > MAX_PURGE_TASKS)
        throw invalid(`task_ids: at most ${MAX_PURGE_TASKS}`);
      // named ids are all acted on (max_tasks bounds the oldest-first walk), as RedriveDead
      const ids = req.taskIds.length ? req.taskIds : undefined;
      const out = await asServerErrors(() => engine.purge(queue, ids?.length ?? max, ids));
      return { purged: out.count, remaining: out.remaining, notFound: out.notFound };
    },
  };
}
