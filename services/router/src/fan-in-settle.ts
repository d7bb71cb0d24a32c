import { leaseTokenShard } from "@codeq/engine";
import { ServerError, Status } from "nice-grpc";
import type { LeaseStreamRequest, SettleResult } from "@codeq/proto";
import { CALLER_CODES } from "@codeq/server-kit";
import type { ClientSide } from "./fan-in-client";
import type { Leg } from "./fan-in-leg";
import { asServerError } from "./fan-out";
import { settlers } from "./queue-router";
import type { Forward, Routing } from "./routing";
import type { ShardConn } from "./shard-pool";
import { settledAnswer, type StreamAcks, UNSETTLED_CODES } from "./stream-acks";

/** What a LeaseStream's settlements need of the session that fans it in (FanInSession). */
export interface SettlementHost {
  readonly routing: Routing;
  readonly f: Forward;
  readonly client: ClientSide;
  /** The stream to `shard` the session holds, open or closed, if any. */
  leg(shard: string): Leg | undefined;
  /** Ends the session with `error`: a settlement the client got wrong. */
  end(error: ServerError): void;
  /** A client request's settlements are answered: the drain, or the half-close, may end now. */
  answered(): void;
  /** Tasks of `shards` were settled (their legs counted them off). */
  settledOn(shards: Iterable<string | undefined>): void;
}

/**
 * A client's acks, nacks and extends on a LeaseStream through the router: each goes to
 * the shard its token names, on that shard's stream while it is open (the shard then
 * stops tracking the lease), by a unary call otherwise, and they are answered once per
 * client request, in its order.
 */
export class StreamSettlements {
  constructor(private readonly host: SettlementHost) {}

  /** Settles a client request's acks, nacks and extends, and answers it. */
  async settle(req: LeaseStreamRequest): Promise<void> {
    const { client } = this.host;
    const unary = settlers(this.host.routing, this.host.f);
    const onLeg =
      <K extends "acks" | "nacks" | "extends">(kind: K) =>
      (conn: ShardConn, part: LeaseStreamRequest[K]) => {
        const leg = this.host.leg(conn.id);
        if (!leg || leg.closed) return undefined;
        return leg.settle({ [kind]: part }).then((r) => r[kind] as SettleResult[K]);
      };
    const n = req.acks.length + req.nacks.length + req.extends.length;
    client.asked(n);
    try {
      const [acks, nacks, extendsOut] = await Promise.all([
        req.acks.length ? unary.ack(req.acks, onLeg("acks")) : [],
        req.nacks.length ? unary.nack(req.nacks, onLeg("nacks")) : [],
        req.extends.length ? unary.extend(req.extends, onLeg("extends")) : [],
      ]);
      client.answer({
        settled: { requestId: req.requestId, acks, nacks, extends: extendsOut },
      });
      // each leg took what its shard settled off its count when the shard answered
      this.host.settledOn([...req.acks, ...req.nacks].map((i) => leaseTokenShard(i.leaseToken)));
    } catch (err) {
      this.host.end(asServerError(err));
    } finally {
      this.answered(n);
    }
  }

  /**
   * A client's acks of one shard's tasks on that shard's open stream, as bytes both
   * ways (StreamAcks); answered as `settle` answers (settleByToken), a failure of the
   * shard becoming every item's status.
   */
  async settleAcks(leg: Leg, req: StreamAcks): Promise<void> {
    const { client } = this.host;
    client.asked(req.count);
    try {
      // through the shard's connection now, as settleByToken: the leg's own is retired,
      // its breaker shut down, once the map changed the shard's endpoint
      const conn = this.host.routing.pool.get(leg.conn.id);
      const settled = await conn.call(() => leg.settleAcks(req.acks));
      const answer = settledAnswer(req.requestId, settled);
      // applied or not, the shard's answer cannot say: not a status to retry on
      if (!answer)
        throw new ServerError(
          Status.INTERNAL,
          `shard ${leg.conn.id}: its answer to the acks is malformed`,
        );
      client.answer(answer);
      this.host.settledOn([req.shard]); // the leg counted them off as they came
    } catch (err) {
      const e = asServerError(err);
      if (CALLER_CODES.has(e.code)) {
        this.host.end(e);
        return;
      }
      const status = { code: e.code, message: e.details };
      const acks = Array.from({ length: req.count }, () => status);
      client.answer({ settled: { requestId: req.requestId, acks, nacks: [], extends: [] } });
      if (!UNSETTLED_CODES.has(e.code)) {
        // no answer came to count them off by: no longer ours all the same
        const held = this.host.leg(req.shard);
        if (held) held.inflight = Math.max(0, held.inflight - req.count);
        this.host.settledOn([req.shard]);
      }
    } finally {
      this.answered(req.count);
    }
  }

  /** A client request's `items` settlements are answered. */
  private answered(items: number): void {
    this.host.client.answered(items);
    this.host.answered();
  }
}
