import type { EngineContext } from "./engine-context";
import { ScriptCode } from "./errors";
import { queueId, type QueueRef } from "./keys";
import { decodeLeaseToken, type LeaseTokenFields } from "./lease-token";
import {
  holdsLease,
  NONCE_DIGITS,
  nonceText,
  putDigits,
  SEQ_DIGITS,
  seqText,
  timeText,
} from "./task-record";
import { ID_WIDTH } from "./task-id";
import type { TaskState } from "./task-record";

/** One ack in the ack script's packed argument. */
const ACK_WIDTH = ID_WIDTH + SEQ_DIGITS + NONCE_DIGITS;

/** Settling one delivery as done. */
export interface AckInput {
  readonly token: string;
  readonly result?: Uint8Array;
}

/** Settling one delivery as failed. */
export interface NackInput {
  readonly token: string;
  /** Absent: the task's backoff. 0: ready at once. */
  readonly delayMs?: number;
  readonly error?: string;
  /** Straight to the DLQ. */
  readonly deadLetter?: boolean;
}

export interface ExtendInput {
  readonly token: string;
  /** New deadline = now + this. 0 or absent: the duration the task was leased with. */
  readonly leaseMs?: number;
}

/** The outcome of one item. `code` is ScriptCode.Ok, AlreadyDone or a refusal. */
export interface SettleOutcome {
  readonly code: ScriptCode;
  /** Nack: the state the task went to. */
  readonly state?: TaskState;
  /** Extend: the new deadline. */
  readonly deadline?: number;
}

interface Group<I> {
  readonly queue: QueueRef;
  readonly items: Array<{ index: number; token: LeaseTokenFields; input: I }>;
}

/**
 * Verifies each item's token and groups items by queue. Tokens that are malformed,
 * forged or name another shard answer NOT_FOUND without touching the store.
 */
function groupByQueue<I extends { token: string }>(
  ctx: EngineContext,
  inputs: readonly I[],
  outcomes: SettleOutcome[],
): Group<I>[] {
  const groups = new Map<string, Group<I>>();
  inputs.forEach((input, index) => {
    const token = decodeLeaseToken(input.token);
    if (!token || token.shard !== ctx.shard) {
      outcomes[index] = { code: ScriptCode.NotFound };
      return;
    }
    const id = queueId(token);
    let group = groups.get(id);
    if (!group) {
      group = { queue: { command: token.command, tenant: token.tenant }, items: [] };
      groups.set(id, group);
    }
    group.items.push({ index, token, input });
  });
  return [...groups.values()];
}

/**
 * Runs one script per queue (in parallel, so one connection pipelines them) and
 * puts each item's outcome back at its index.
 */
async function settle<I extends { token: string }>(
  ctx: EngineContext,
  inputs: readonly I[],
  run: (group: Group<I>) => Promise<SettleOutcome[]>,
): Promise<SettleOutcome[]> {
  const outcomes: SettleOutcome[] = new Array(inputs.length);
  const groups = groupByQueue(ctx, inputs, outcomes);
  await Promise.all(
    groups.map(async (group) => {
      const results = await run(group);
      group.items.forEach((item, i) => (outcomes[item.index] = results[i]!));
    }),
  );
  return outcomes;
}

export function ack(ctx: EngineContext, inputs: readonly AckInput[]): Promise<SettleOutcome[]> {
  return settle(ctx, inputs, async ({ queue, items }) => {
    const k = ctx.keys(queue);
    const args: Array<string | number | Uint8Array> = [
      timeText(ctx.clock.now()),
      ctx.completedRetentionMs,
      items.length,
    ];
    // each item: task id, lease sequence, nonce, written in place
    const packed = Buffer.allocUnsafe(items.length * ACK_WIDTH);
    const results: Array<number | Uint8Array> = [];
    items.forEach(({ token, input }, i) => {
      const at = packed.write(token.taskId, i * ACK_WIDTH, "latin1") + i * ACK_WIDTH;
      putDigits(packed, putDigits(packed, at, token.fence, SEQ_DIGITS), token.nonce, NONCE_DIGITS);
      if (input.result && input.result.length > 0) results.push(i + 1, input.result);
    });
    args.push(packed, results.length / 2, ...results);
    const codes = await ctx.runner.run<number[]>(
      "ack",
      [k.tasks, k.state, k.payloads, k.results, k.leased, k.completed],
      args,
    );
    return codes.map((code) => ({ code }));
  });
}

/**
 * How a nack ends a delivery: a nack; a release of a closed stream's lease (delay 0, at
 * the head of its list); or the same with its attempt not counted (a lease never
 * delivered, or one the shard worker took back at shutdown).
 */
export type NackMode = "nack" | "release" | "uncounted";
const MODE_ARG: Record<NackMode, number> = { nack: 0, release: 1, uncounted: 2 };

/** Nack, and the releases of `NackMode`. */
export function nack(
  ctx: EngineContext,
  inputs: readonly NackInput[],
  mode: NackMode = "nack",
): Promise<SettleOutcome[]> {
  return settle(ctx, inputs, async ({ queue, items }) => {
    const k = ctx.keys(queue);
    const args: Array<string | number> = [
      ctx.clock.now(),
      queueId(queue),
      ctx.random(),
      ctx.defaultBackoffJson,
      items.length,
    ];
    for (const { token, input } of items) {
      args.push(
        token.taskId,
        seqText(token.fence),
        nonceText(token.nonce),
        input.delayMs ?? -1,
        input.deadLetter ? 1 : 0,
        MODE_ARG[mode],
        input.error ?? "",
      );
    }
    const reply = await ctx.runner.run<Array<number | string>>(
      "nack",
      [k.tasks, k.state, k.scheduled, k.leased, k.dead, k.due, ...k.ready],
      args,
    );
    return items.map((_, i) => ({
      code: reply[i * 2] as number,
      state: (reply[i * 2 + 1] || undefined) as TaskState | undefined,
    }));
  });
}

export function extend(
  ctx: EngineContext,
  inputs: readonly ExtendInput[],
): Promise<SettleOutcome[]> {
  return settle(ctx, inputs, async ({ queue, items }) => {
    const k = ctx.keys(queue);
    const args: Array<string | number> = [ctx.clock.now(), queueId(queue), items.length];
    for (const { token, input } of items)
      args.push(token.taskId, seqText(token.fence), nonceText(token.nonce), input.leaseMs ?? 0);
    const reply = await ctx.runner.run<number[]>("extend", [k.state, k.leased, k.due], args);
    return items.map((_, i) => {
      const code = reply[i * 2]!;
      return code === ScriptCode.Ok ? { code, deadline: reply[i * 2 + 1]! } : { code };
    });
  });
}

/** Fields one HMGET of `stillLeased` reads at most, so that no one command holds the store long. */
const LEASED_CHUNK = 1000;

/**
 * Which of these deliveries still hold their task's lease: the task is LEASED under
 * the token's sequence and nonce. A read only; a lease past its deadline that the
 * reaper has not taken back yet still counts. Malformed tokens and other shards'
 * answer false. What one answers false for can never become true again: a later
 * delivery of the task has a sequence of its own.
 */
export async function stillLeased(
  ctx: EngineContext,
  tokens: readonly string[],
): Promise<boolean[]> {
  const outcomes = await settle(
    ctx,
    tokens.map((token) => ({ token })),
    async ({ queue, items }) => {
      const k = ctx.keys(queue);
      const chunks: (typeof items)[] = [];
      for (let i = 0; i < items.length; i += LEASED_CHUNK)
        chunks.push(items.slice(i, i + LEASED_CHUNK));
      // sent together: one connection pipelines them
      const states = await Promise.all(
        chunks.map((chunk) => ctx.redis.hmgetBuffer(k.state, ...chunk.map((c) => c.token.taskId))),
      );
      return chunks.flatMap((chunk, c) =>
        chunk.map(({ token }, j) => ({
          code: holdsLease(states[c]![j] ?? null, token.fence, token.nonce)
            ? ScriptCode.Ok
            : ScriptCode.StaleLease,
        })),
      );
    },
  );
  return outcomes.map((o) => o.code === ScriptCode.Ok);
}
