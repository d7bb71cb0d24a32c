import type { CallContext } from "nice-grpc";
import {
  AckRequest,
  EnqueueBatchRequest,
  ExtendRequest,
  LeaseRequest,
  NackRequest,
  internal,
} from "@codeq/proto";
import {
  answerConcurrently,
  BadRequest,
  identityFrom,
  IDENTITY_HEADERS,
  type Identity,
  type IdentityOptions,
  safeDecode,
} from "@codeq/server-kit";
import { NotOwnerError } from "./errors";
import type { QueueCore } from "./queue-core";
import { leaseReady } from "./queue-service";
import { invalid, toServerError } from "./status";

/**
 * Calls one router stream may have in the store at once. A router multiplexes
 * every caller's enqueues and settlements for this shard over a few such streams,
 * so this is larger than a producer's EnqueueStream allows; past it the shard
 * stops reading and HTTP/2 flow control holds the router back.
 */
export const FORWARD_IN_FLIGHT = 64;

type Answer = Omit<internal.ForwardResponse, "seq" | "error" | "mapVersion" | "owner">;

const NONE: Answer = {
  enqueued: undefined,
  acked: undefined,
  nacked: undefined,
  extended: undefined,
  leased: undefined,
  draining: false,
};

const DRAINING: internal.ForwardResponse = {
  seq: 0,
  ...NONE,
  error: undefined,
  mapVersion: 0,
  owner: "",
  draining: true,
};

/** Runs the one call a message carries, as that caller's QueueService call. */
async function handle(
  core: QueueCore,
  identity: Identity,
  req: internal.ForwardRequest,
): Promise<Answer> {
  const { enqueue, ack, nack, extend, lease, release } = req;
  const n = [enqueue, ack, nack, extend, lease, release].filter((c) => c !== undefined).length;
  if (n !== 1)
    throw invalid(
      `a forwarded message carries exactly one call (enqueue, ack, nack, extend, lease or release), got ${n}`,
    );
  if (release) {
    const tokens = call(internal.ReleaseRequest, release).leaseTokens;
    await core.releaseFor(identity, tokens);
    return NONE;
  }
  if (lease)
    return { ...NONE, leased: await leaseReady(core, identity, call(LeaseRequest, lease)) };
  if (ack)
    return { ...NONE, acked: { results: await core.ack(identity, call(AckRequest, ack).items) } };
  if (nack)
    return {
      ...NONE,
      nacked: { results: await core.nack(identity, call(NackRequest, nack).items) },
    };
  if (extend) {
    const items = call(ExtendRequest, extend).items;
    return { ...NONE, extended: { results: await core.extend(identity, items) } };
  }
  const tasks = call(EnqueueBatchRequest, enqueue!).tasks;
  return { ...NONE, enqueued: { results: await core.enqueue(identity, tasks, req.mapVersion) } };
}

/** A call's request message from its bytes; bytes that are not one are the caller's bad input. */
function call<T>(type: { decode(bytes: Uint8Array): T }, bytes: Uint8Array): T {
  // worded as the router words it: these bytes are its caller's request
  const message = safeDecode(type, bytes);
  if (message instanceof BadRequest) throw message.error();
  return message as T;
}

/**
 * codeq.internal.v1.ShardService.Forward: the calls that change tasks a router
 * forwards (enqueue batches, acks, nacks, extends, leases that do not wait),
 * many callers' on one
 * long-lived stream. Each message is handled exactly as the QueueService call
 * with the same identity metadata would be (the same checks, rights and
 * fencing), and answered once by its seq: with the call's answer, or with the
 * status it would have ended with (for fencing, with the map version held and
 * the queue's owner, which a call carries in trailers).
 *
 * When the shard worker starts draining it tells the router so (a `draining`
 * answer with seq 0); the router sends nothing more on the stream and
 * half-closes it, and every call it sent is answered before the stream ends. A
 * router that does not half-close is cut off when the grace period ends.
 */
export function forward(
  core: QueueCore,
  trust: IdentityOptions,
  draining: AbortSignal,
  requests: AsyncIterable<internal.ForwardRequest>,
  ctx: CallContext,
): AsyncGenerator<internal.ForwardResponse> {
  const secret = ctx.metadata.get(IDENTITY_HEADERS.routerSecret);
  return answerConcurrently<internal.ForwardRequest, internal.ForwardResponse>(
    requests,
    async (req) => {
      // what the identity metadata of a QueueService call would say, the secret
      // being the one the stream was opened with
      const stated = (key: string): string | undefined => {
        switch (key) {
          case IDENTITY_HEADERS.tenant:
            return req.tenant;
          case IDENTITY_HEADERS.principal:
            return req.principal;
          case IDENTITY_HEADERS.roles:
            return req.roles;
          case IDENTITY_HEADERS.commands:
            return req.commands;
          case IDENTITY_HEADERS.routerSecret:
            return secret;
          default:
            return undefined;
        }
      };
      let answer = await handle(core, identityFrom({ get: stated }, trust), req);
      if (answer.leased && answer.leased.tasks.length > 0 && ctx.signal.aborted) {
        // the router's stream is gone (it crashed, its connection broke): nobody will
        // read this answer, so the tasks go back now rather than when their leases expire
        await core.giveBack(answer.leased.tasks.map((t) => t.leaseToken)).catch(() => undefined);
        answer = { ...answer, leased: { tasks: [] } };
      }
      return { seq: req.seq, ...answer, error: undefined, mapVersion: 0, owner: "" };
    },
    (req, err) => {
      const e = toServerError(err);
      const fenced = err instanceof NotOwnerError ? err : undefined;
      return {
        seq: req.seq,
        ...NONE,
        error: { code: e.code, message: e.details },
        mapVersion: fenced?.mapVersion ?? 0,
        owner: fenced?.owner ?? "",
      };
    },
    {
      inFlight: FORWARD_IN_FLIGHT,
      announce: { signal: draining, message: DRAINING },
      // the router's stream ended with answers not yet sent (it read slowly, then
      // broke): nobody gets the tasks of a lease among them, so they go back now
      onUnsent: (res) => {
        const tokens = res.leased?.tasks.map((t) => t.leaseToken) ?? [];
        if (tokens.length > 0) core.giveBack(tokens).catch(() => undefined);
      },
    },
  );
}
