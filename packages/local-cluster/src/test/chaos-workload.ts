import { setTimeout as sleep } from "node:timers/promises";
import { createChannel, createClient, Metadata, Status, type Channel } from "nice-grpc";
import { LeaseStreamRequest, QueueServiceDefinition, type QueueServiceClient } from "@codeq/proto";
import { Channel as Queue } from "@codeq/server-kit";

/**
 * The producers and stream workers of the chaos test, and the ledger that checks
 * what they saw: every id a producer was told was accepted, every delivery with its
 * lease deadline and whether its stream was still open, every ack's outcome.
 */

/** Ack answers after which the ack may or may not have been applied. */
const OPEN_OUTCOME = new Set<number | undefined>([
  undefined,
  Status.CANCELLED,
  Status.DEADLINE_EXCEEDED,
  Status.UNAVAILABLE,
]);

export interface Delivery {
  readonly at: number;
  readonly deadline: number;
  readonly worker: string;
  /** The router the stream went through. */
  readonly router: string;
  /** Set when the stream that received it ended (its leases are released or expire). */
  streamEndedAt?: number;
  ackedOk?: boolean;
  /** When the ack was sent, and the request id it went in. */
  ackSent?: number;
  ackRequest?: number;
  /** The ack's answer (code), when one came. */
  ackCode?: number;
}

export class Ledger {
  /** Accepted task id → its tenant. */
  readonly accepted = new Map<string, string>();
  readonly deliveries = new Map<string, Delivery[]>();
  readonly acked = new Set<string>();
  /**
   * Tasks whose ack was sent but whose answer never came (the stream ended first),
   * found COMPLETED on their shard afterwards: acked, the worker just did not hear it.
   */
  readonly ackedUnheard = new Set<string>();
  /** Routers killed, with when: the streams through them ended then. */
  readonly killedRouters = new Map<string, number>();
  refusedEnqueues = 0;
  /** Acks a worker was told failed: id, code and message. */
  readonly ackFailures: string[] = [];

  /** Accepted tasks not (yet) known to be acked. */
  missing(): string[] {
    return [...this.accepted.keys()].filter(
      (id) => !this.acked.has(id) && !this.ackedUnheard.has(id),
    );
  }

  /**
   * Missing tasks whose last ack may have been applied all the same: sent with no answer
   * (its stream died), or answered with a status that leaves the outcome open (the router
   * answers UNAVAILABLE when a shard's stream closed before it answered).
   */
  unheardAcks(): string[] {
    return this.missing().filter((id) => {
      const last = this.deliveries.get(id)?.at(-1);
      return last?.ackSent !== undefined && OPEN_OUTCOME.has(last.ackCode);
    });
  }

  deliver(id: string, d: Delivery): void {
    let list = this.deliveries.get(id);
    if (!list) this.deliveries.set(id, (list = []));
    list.push(d);
  }

  /**
   * Every second or later delivery of a task must come after the previous one
   * stopped being a live lease: its deadline passed, or its stream ended (the lease
   * was released, or expires). A delivery while the previous lease was live, or after
   * a successful ack, is a violation. Returns the duplicates by cause and the violations.
   */
  /** The stream of `d` had ended by `at` (noticed by its worker, or its router was killed). */
  private endedBy(d: Delivery, at: number): boolean {
    const killed = this.killedRouters.get(d.router);
    return (
      (d.streamEndedAt !== undefined && d.streamEndedAt <= at) ||
      (killed !== undefined && killed <= at)
    );
  }

  audit(): { expired: number; released: number; violations: string[] } {
    let expired = 0;
    let released = 0;
    const violations: string[] = [];
    for (const [id, list] of this.deliveries) {
      for (let i = 1; i < list.length; i++) {
        const prev = list[i - 1]!;
        const next = list[i]!;
        if (prev.ackedOk)
          violations.push(`${id}: delivered again at ${next.at} after a successful ack`);
        else if (next.at >= prev.deadline) expired++;
        else if (this.endedBy(prev, next.at)) released++;
        else
          violations.push(
            `${id}: delivered to ${next.worker} at ${next.at} while ${prev.worker}'s lease (deadline ${prev.deadline}) was live`,
          );
      }
    }
    return { expired, released, violations };
  }
}

function client(address: string, tenant: string, channels: Channel[]): QueueServiceClient {
  const channel = createChannel(address);
  channels.push(channel);
  return createClient(QueueServiceDefinition, channel, {
    "*": { metadata: new Metadata({ "x-codeq-tenant": tenant }) },
  });
}

/** Round-robins over the routers still alive; a failed call moves to the next one. */
export class RouterSet {
  private turn = 0;
  readonly channels: Channel[] = [];
  constructor(private readonly addresses: () => string[]) {}

  next(tenant: string): { client: QueueServiceClient; router: string } {
    const list = this.addresses();
    const router = list[this.turn++ % list.length]!;
    return { client: client(router, tenant, this.channels), router };
  }

  close(): void {
    for (const c of this.channels) c.close();
  }
}

/** A producer: EnqueueBatch of `batch` tasks of `command` for `tenant` every `everyMs`. */
export async function produce(
  routers: RouterSet,
  ledger: Ledger,
  command: string,
  tenant: string,
  signal: AbortSignal,
  batch = 20,
  everyMs = 20,
): Promise<void> {
  let c = routers.next(tenant).client;
  let n = 0;
  while (!signal.aborted) {
    try {
      const res = await c.enqueueBatch({
        tasks: Array.from({ length: batch }, () => ({
          command,
          payload: Buffer.from(`${tenant}-${n++}`),
        })),
      });
      for (const r of res.results) {
        if (r.status?.code === 0) ledger.accepted.set(r.taskId, tenant);
        else ledger.refusedEnqueues++;
      }
    } catch {
      ledger.refusedEnqueues += batch;
      c = routers.next(tenant).client; // that router may be gone
    }
    await sleep(everyMs);
  }
}

/**
 * A stream worker: subscribes to `command` through a router, acks every pushed task
 * in one message that also returns its credits; when the stream breaks it marks the
 * leases it held as ended and reconnects (through the next router).
 */
export async function work(
  routers: RouterSet,
  ledger: Ledger,
  name: string,
  command: string,
  tenant: string,
  signal: AbortSignal,
  leaseMs: number,
): Promise<void> {
  while (!signal.aborted) {
    const requests = new Queue<LeaseStreamRequest>();
    const send = (r: Parameters<typeof LeaseStreamRequest.fromPartial>[0]) =>
      requests.push(LeaseStreamRequest.fromPartial(r));
    const open = new Map<string, Delivery>(); // token → delivery, until settled
    const pending = new Map<number, { tokens: string[]; ids: string[] }>();
    let requestId = 0;
    const abort = new AbortController();
    const stop = () => abort.abort();
    signal.addEventListener("abort", stop, { once: true });
    send({
      subscribe: { commands: [command], leaseDurationMs: leaseMs, maxBatch: 50 },
      credits: 50,
    });
    const { client: c, router } = routers.next(tenant);
    try {
      for await (const res of c.leaseStream(requests, { signal: abort.signal })) {
        const tasks = res.tasks?.tasks ?? [];
        if (tasks.length > 0) {
          const now = Date.now();
          const tokens: string[] = [];
          const ids: string[] = [];
          for (const t of tasks) {
            const d: Delivery = { at: now, deadline: t.leaseDeadlineMs, worker: name, router };
            ledger.deliver(t.task!.id, d);
            open.set(t.leaseToken, d);
            tokens.push(t.leaseToken);
            ids.push(t.task!.id);
          }
          pending.set(++requestId, { tokens, ids });
          for (const token of tokens) {
            const d = open.get(token)!;
            d.ackSent = Date.now();
            d.ackRequest = requestId;
          }
          send({
            requestId,
            credits: tasks.length,
            acks: tokens.map((leaseToken) => ({ leaseToken })),
          });
        }
        const settled = res.settled;
        if (settled) {
          const p = pending.get(settled.requestId);
          pending.delete(settled.requestId);
          settled.acks.forEach((s, i) => {
            const token = p?.tokens[i];
            const d = token ? open.get(token) : undefined;
            if (token) open.delete(token);
            if (d) d.ackCode = s.code;
            if (s.code === 0 && d && p) {
              d.ackedOk = true;
              ledger.acked.add(p.ids[i]!);
            } else if (p) ledger.ackFailures.push(`${p.ids[i]}: ${s.code} ${s.message}`);
          });
        }
      }
    } catch {
      // the router went away, or we stopped: reconnect below
    } finally {
      signal.removeEventListener("abort", stop);
      const now = Date.now();
      for (const d of open.values()) d.streamEndedAt = now;
      requests.close();
    }
    if (!signal.aborted) await sleep(100);
  }
}
