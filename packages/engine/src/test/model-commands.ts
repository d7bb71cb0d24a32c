/** The property test's commands: each runs one step on the engine and the model and compares them. */
import fc from "fast-check";
import type { ManualClock } from "../clock";
import type { QueueEngine } from "../engine";
import { ScriptCode } from "../errors";
import type { StoredTask, TaskState } from "../task-record";
import type { TaskSpec } from "../task-spec";
import type { Delivery } from "../lease";
import { Q } from "./fixture";
import { byScoreThenId, Model, type IssuedToken, type ModelTask, type Real } from "./engine-model";

export function fail(what: string, expected: unknown, actual: unknown): never {
  throw new Error(
    `${what}\n  expected: ${JSON.stringify(expected)}\n  actual:   ${JSON.stringify(actual)}`,
  );
}

export function same(what: string, actual: unknown, expected: unknown): void {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) fail(what, expected, actual);
}

/** The fields the model predicts, in a fixed key order so JSON comparison is exact. */
export function project(t: ModelTask | StoredTask) {
  return {
    state: t.state,
    priority: t.priority,
    maxAttempts: t.maxAttempts,
    attempts: t.attempts,
    leaseSeq: t.leaseSeq,
    runAt: t.runAt,
    leaseDeadline: t.leaseDeadline,
    leaseMs: t.leaseMs,
    lastError: t.lastError,
    doneAt: t.doneAt,
  };
}

/** Compares the whole queue with the model: counts, every record, the due index. */
export async function checkAll(m: Model, r: Real): Promise<void> {
  m.selfCheck();
  const stats = await r.engine.stats(Q);
  same("stats", stats, {
    readyByPriority: m.ready.map((l) => l.length),
    ready: m.ready.reduce((n, l) => n + l.length, 0),
    scheduled: m.inState("SCHEDULED").length,
    leased: m.inState("LEASED").length,
    dead: m.inState("DEAD").length,
    completed: m.inState("COMPLETED").length,
    moving: 0,
  });
  const tasks = [...m.tasks.values()];
  const stored = await Promise.all(tasks.map((t) => r.engine.getTask(Q, t.id)));
  tasks.forEach((t, i) => {
    const s = stored[i];
    if (!s) fail(`getTask(${t.label}) found nothing`, project(t), undefined);
    same(`task ${t.label}`, project(s), project(t));
  });
  // The background loops find work only through the due index, so it must never
  // point later than the first moment a scheduled task can be promoted (run-at) or
  // a lease reaped (deadline + 1: reap takes deadlines strictly before now).
  const pending = [
    ...m.inState("SCHEDULED").map((t) => ({ at: t.runAt, what: `run-at of ${t.label}` })),
    ...m.inState("LEASED").map((t) => ({
      at: t.leaseDeadline! + 1,
      what: `expiry of ${t.label}'s lease`,
    })),
  ].sort((a, b) => a.at - b.at);
  const due = await r.engine.nextDueAt();
  const first = pending[0];
  if (first && (due === undefined || due > first.at))
    fail(`due index misses the ${first.what}`, `<= ${first.at - START}`, due && due - START);
  const dueNow = await r.engine.dueQueues();
  const hasWork = first !== undefined && first.at <= m.now;
  if (hasWork && !dueNow.some((q) => q.command === Q.command && q.tenant === Q.tenant))
    fail(`dueQueues() misses the queue (${first.what} has come)`, [Q], dueNow);
}

// ---------------------------------------------------------------- token picks

/** live: a token of a currently leased task (any token if none); any: any token ever issued; forged: a tampered one. */
export interface Pick {
  readonly kind: "live" | "any" | "forged";
  readonly n: number;
}

export const pickArb: fc.Arbitrary<Pick> = fc.record({
  kind: fc.constantFrom<Pick["kind"]>("live", "live", "any", "any", "forged"),
  n: fc.nat(50),
});

export const showPick = (p: Pick) => `${p.kind}#${p.n}`;

export interface Resolved {
  readonly token: string;
  /** Undefined for a forged token: the engine must answer NotFound. */
  readonly issued?: IssuedToken;
  readonly name: string;
}

export function resolve(m: Model, p: Pick): Resolved {
  const all = m.tokens;
  const live = all.filter((t) => m.isLive(t));
  const from = p.kind === "live" && live.length > 0 ? live : all;
  const tok = from[p.n % from.length]!;
  if (p.kind !== "forged") return { token: tok.token, issued: tok, name: tok.name };
  const last = tok.token.at(-1) === "A" ? "B" : "A";
  return { token: tok.token.slice(0, -1) + last, name: `forged(${tok.name})` };
}

// ---------------------------------------------------------------- commands

export type Cmd = fc.AsyncCommand<Model, Real>;

/** Runs one step, then compares everything; a failure carries the trace of the run. */
export async function step(m: Model, r: Real, body: () => Promise<string>): Promise<void> {
  try {
    m.trace.push(`@${m.now - START} ${await body()}`);
    await checkAll(m, r);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`${message}\ntrace (time relative to start):\n  ${m.trace.join("\n  ")}`);
  }
}

export const START = 1_700_000_000_000; // the ManualClock's default start

export interface EnqueueItem {
  readonly priority: number;
  readonly delayMs: number;
  readonly maxAttempts: number;
  readonly backoffMs: number;
}

export class EnqueueCmd implements Cmd {
  /** With `lease`, the batch goes through enqueueAndLease: stored, then leased in the same call. */
  constructor(
    readonly items: readonly EnqueueItem[],
    readonly lease?: { readonly max: number; readonly leaseMs: number },
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    await step(m, r, async () => {
      const first = m.tasks.size + 1;
      const labels = this.items.map((_, i) => `T${first + i}`);
      const specs = this.items.map((it, i): TaskSpec => ({
        payload: Buffer.from(labels[i]!),
        priority: it.priority,
        delayMs: it.delayMs,
        maxAttempts: it.maxAttempts,
        backoff: {
          kind: "fixed",
          baseMs: it.backoffMs,
          maxMs: it.backoffMs + 500,
          jitter: false,
        },
      }));
      const lease = this.lease;
      const { outcomes, deliveries, readyLeft } = lease
        ? await r.engine.enqueueAndLease(Q, specs, lease)
        : { outcomes: await r.engine.enqueue(Q, specs), deliveries: undefined, readyLeft: 0 };
      outcomes.forEach((o, i) => {
        const it = this.items[i]!;
        if (m.tasks.has(o.id)) fail(`enqueue reused the id of ${m.label(o.id)}`, "a new id", o.id);
        const state: TaskState = it.delayMs > 0 ? "SCHEDULED" : "READY";
        same(`enqueue outcome of ${labels[i]}`, [o.duplicate, o.state], [false, state]);
        m.add({
          label: labels[i]!,
          id: o.id,
          priority: it.priority,
          maxAttempts: it.maxAttempts,
          backoffMs: it.backoffMs,
          state,
          attempts: 0,
          leaseSeq: 0,
          runAt: m.now + it.delayMs,
        });
      });
      const leased = deliveries && compareLease(m, deliveries, lease!.max, lease!.leaseMs);
      // the count the worker announces may include stale ids, never miss a ready task
      const ready = m.inState("READY").length;
      if (lease && readyLeft < ready) fail("ids left in the ready lists", `≥ ${ready}`, readyLeft);
      return `${this} → ${labels.join(", ")}${leased ? `, ${leased}` : ""}`;
    });
  }
  toString(): string {
    const show = (it: EnqueueItem) =>
      `p${it.priority}${it.delayMs ? ` delay=${it.delayMs}` : ""} max=${it.maxAttempts} backoff=${it.backoffMs}`;
    const items = this.items.map(show).join("; ");
    return this.lease
      ? `enqueueAndLease(${items}; max=${this.lease.max}, ${this.lease.leaseMs}ms)`
      : `enqueue(${items})`;
  }
}

/** Leases and checks the exact deliveries (order, attempts, fences, deadlines, payloads). */
export async function leaseAndCompare(
  m: Model,
  r: Real,
  max: number,
  leaseMs: number,
): Promise<string> {
  return compareLease(m, await r.engine.lease(Q, { max, leaseMs }), max, leaseMs);
}

/** Checks deliveries against the model's lease of the same ask and records their tokens. */
function compareLease(m: Model, got: readonly Delivery[], max: number, leaseMs: number): string {
  const want = m.lease(max, leaseMs);
  same(
    `lease(max=${max}) delivered, in order`,
    got.map((d) => m.label(d.task.id)),
    want.map((t) => t.label),
  );
  got.forEach((d, i) => {
    const t = want[i]!;
    same(`delivery of ${t.label}`, project(d.task), project(t));
    same(`deadline of ${t.label}`, d.deadline, t.leaseDeadline);
    same(`payload of ${t.label}`, d.task.payload.toString(), t.label);
    m.tokens.push({
      token: d.token,
      id: t.id,
      fence: t.leaseSeq,
      name: `${t.label}#${t.leaseSeq}`,
    });
  });
  return `lease(max=${max}, ${leaseMs}ms) → [${want.map((t) => `${t.label}#${t.leaseSeq}`).join(", ")}]`;
}

export class LeaseCmd implements Cmd {
  constructor(
    readonly max: number,
    readonly leaseMs: number,
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    await step(m, r, () => leaseAndCompare(m, r, this.max, this.leaseMs));
  }
  toString(): string {
    return `lease(max=${this.max}, ${this.leaseMs}ms)`;
  }
}

export class AckCmd implements Cmd {
  constructor(readonly picks: readonly Pick[]) {}
  check = (m: Readonly<Model>) => m.tokens.length > 0;
  async run(m: Model, r: Real): Promise<void> {
    await step(m, r, async () => {
      const items = this.picks.map((p) => resolve(m, p));
      const got = await r.engine.ack(items.map((it) => ({ token: it.token })));
      const want = items.map((it) => (it.issued ? m.ack(it.issued) : ScriptCode.NotFound));
      same(
        `ack [${items.map((it) => it.name).join(", ")}] codes`,
        got.map((o) => o.code),
        want,
      );
      return `ack [${items.map((it) => it.name).join(", ")}] → [${want.join(", ")}]`;
    });
  }
  toString(): string {
    return `ack(${this.picks.map(showPick).join(", ")})`;
  }
}

export interface NackItem {
  readonly pick: Pick;
  /** undefined: the task's backoff. */
  readonly delayMs: number | undefined;
  readonly deadLetter: boolean;
  readonly error: string | undefined;
}

export class NackCmd implements Cmd {
  constructor(readonly items: readonly NackItem[]) {}
  check = (m: Readonly<Model>) => m.tokens.length > 0;
  async run(m: Model, r: Real): Promise<void> {
    await step(m, r, async () => {
      const resolved = this.items.map((it) => ({ ...it, ...resolve(m, it.pick) }));
      const got = await r.engine.nack(
        resolved.map((it) => ({
          token: it.token,
          ...(it.delayMs !== undefined ? { delayMs: it.delayMs } : {}),
          ...(it.deadLetter ? { deadLetter: true } : {}),
          ...(it.error !== undefined ? { error: it.error } : {}),
        })),
      );
      const want = resolved.map((it) =>
        it.issued
          ? m.nack(it.issued, it.delayMs ?? -1, it.deadLetter, false, it.error ?? "")
          : { code: ScriptCode.NotFound, state: undefined },
      );
      const names = resolved.map((it) => it.name).join(", ");
      same(
        `nack [${names}] outcomes`,
        got.map((o) => [o.code, o.state]),
        want.map((o) => [o.code, o.state]),
      );
      return `nack [${names}] ${this.options()} → [${want.map((o) => `${o.code} ${o.state ?? ""}`.trim()).join(", ")}]`;
    });
  }
  private options(): string {
    return this.items
      .map((it) =>
        [
          it.delayMs === undefined ? "backoff" : `delay=${it.delayMs}`,
          it.deadLetter ? "deadLetter" : "",
          it.error !== undefined ? `error=${JSON.stringify(it.error)}` : "",
        ]
          .filter(Boolean)
          .join(" "),
      )
      .join("; ");
  }
  toString(): string {
    return `nack(${this.items.map((it) => showPick(it.pick)).join(", ")}; ${this.options()})`;
  }
}

export class ExtendCmd implements Cmd {
  constructor(readonly items: ReadonlyArray<{ pick: Pick; leaseMs: number | undefined }>) {}
  check = (m: Readonly<Model>) => m.tokens.length > 0;
  async run(m: Model, r: Real): Promise<void> {
    await step(m, r, async () => {
      const resolved = this.items.map((it) => ({ ...it, ...resolve(m, it.pick) }));
      const got = await r.engine.extend(
        resolved.map((it) => ({
          token: it.token,
          ...(it.leaseMs !== undefined ? { leaseMs: it.leaseMs } : {}),
        })),
      );
      const want = resolved.map((it) =>
        it.issued ? m.extend(it.issued, it.leaseMs ?? 0) : { code: ScriptCode.NotFound },
      );
      const names = resolved.map((it) => it.name).join(", ");
      same(
        `extend [${names}] outcomes`,
        got.map((o) => [o.code, o.deadline]),
        want.map((o) => [o.code, o.deadline]),
      );
      return `extend [${names}] → [${want.map((o) => o.code).join(", ")}]`;
    });
  }
  toString(): string {
    return `extend(${this.items.map((it) => `${showPick(it.pick)}${it.leaseMs ? ` ${it.leaseMs}ms` : ""}`).join(", ")})`;
  }
}

export class ReleaseCmd implements Cmd {
  constructor(readonly picks: readonly Pick[]) {}
  check = (m: Readonly<Model>) => m.tokens.length > 0;
  async run(m: Model, r: Real): Promise<void> {
    await step(m, r, async () => {
      const items = this.picks.map((p) => resolve(m, p));
      const got = await r.engine.release(items.map((it) => it.token));
      // settled last first, each put at the head: the batch keeps its order there
      const want: { code: ScriptCode; state: string | undefined }[] = new Array(items.length);
      for (let i = items.length - 1; i >= 0; i--) {
        const it = items[i]!;
        want[i] = it.issued
          ? m.nack(it.issued, 0, false, true, "lease released")
          : { code: ScriptCode.NotFound, state: undefined };
      }
      const names = items.map((it) => it.name).join(", ");
      same(
        `release [${names}] outcomes`,
        got.map((o) => [o.code, o.state]),
        want.map((o) => [o.code, o.state]),
      );
      return `release [${names}] → [${want.map((o) => `${o.code} ${o.state ?? ""}`.trim()).join(", ")}]`;
    });
  }
  toString(): string {
    return `release(${this.picks.map(showPick).join(", ")})`;
  }
}

export class ReapCmd implements Cmd {
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    await step(m, r, async () => {
      const got = await r.engine.reap(Q);
      const want = m.reap();
      same("reap", got, want);
      return `reap → ${JSON.stringify(want)}`;
    });
  }
  toString(): string {
    return "reap";
  }
}

export class PromoteCmd implements Cmd {
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    await step(m, r, async () => {
      const got = await r.engine.promote(Q);
      const want = m.promoteDue();
      same("promoted", got, want.length);
      return `promote → [${want.map((t) => t.label).join(", ")}]`;
    });
  }
  toString(): string {
    return "promote";
  }
}

export class AdvanceCmd implements Cmd {
  constructor(readonly ms: number) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    await step(m, r, async () => {
      r.clock.advance(this.ms);
      return `${this}`;
    });
  }
  toString(): string {
    return `advance(${this.ms})`;
  }
}

/** Moves the clock to just before, exactly at, or just after a deadline or run-at: the boundaries. */
export class AdvanceToCmd implements Cmd {
  constructor(
    readonly target: "deadline" | "runAt",
    readonly n: number,
    readonly offset: -1 | 0 | 1,
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    await step(m, r, async () => {
      const times = (
        this.target === "deadline"
          ? m.inState("LEASED").map((t) => t.leaseDeadline!)
          : m.inState("SCHEDULED").map((t) => t.runAt)
      ).sort((a, b) => a - b);
      const at = times.length > 0 ? times[this.n % times.length]! + this.offset : m.now;
      const by = Math.max(0, at - m.now);
      r.clock.advance(by);
      return `${this}: advance(${by})`;
    });
  }
  toString(): string {
    return `advanceTo(${this.target}#${this.n}${this.offset ? (this.offset > 0 ? "+1" : "-1") : ""})`;
  }
}

export type EdgeOp = "extend" | "ack" | "nack" | "release" | "reap";

/**
 * The lease-expiry boundary in one go: the clock to one lease's deadline -1, 0 or +1,
 * then one action on that lease's current token (or a reap). At the deadline an extend
 * is still allowed; after it, extend is refused but ack and nack are accepted until a
 * reap (which takes only deadlines strictly before now) has taken the lease back.
 */
export class EdgeCmd implements Cmd {
  constructor(
    readonly n: number,
    readonly offset: -1 | 0 | 1,
    readonly op: EdgeOp,
  ) {}
  check = (m: Readonly<Model>) =>
    m.inState("LEASED").some((t) => t.leaseDeadline! + this.offset >= m.now);
  async run(m: Model, r: Real): Promise<void> {
    const leased = m
      .inState("LEASED")
      .filter((t) => t.leaseDeadline! + this.offset >= m.now)
      .sort(byScoreThenId((t) => t.leaseDeadline!));
    const t = leased[this.n % leased.length]!;
    await new AdvanceCmd(t.leaseDeadline! + this.offset - m.now).run(m, r);
    const live = m.tokens.findIndex((tok) => tok.id === t.id && tok.fence === t.leaseSeq);
    const pick: Pick = { kind: "any", n: live };
    switch (this.op) {
      case "extend":
        return new ExtendCmd([{ pick, leaseMs: undefined }]).run(m, r);
      case "ack":
        return new AckCmd([pick]).run(m, r);
      case "nack":
        return new NackCmd([{ pick, delayMs: undefined, deadLetter: false, error: undefined }]).run(
          m,
          r,
        );
      case "release":
        return new ReleaseCmd([pick]).run(m, r);
      case "reap":
        return new ReapCmd().run(m, r);
    }
  }
  toString(): string {
    const at = this.offset ? (this.offset > 0 ? "+1" : "-1") : "";
    return `atDeadline(#${this.n}${at}, ${this.op})`;
  }
}

// ---------------------------------------------------------------- arbitraries

export const enqueueItemArb: fc.Arbitrary<EnqueueItem> = fc.record({
  // a few favoured priorities so FIFO within one priority is exercised often
  priority: fc.oneof(fc.integer({ min: 0, max: 9 }), fc.constantFrom(2, 7)),
  delayMs: fc.oneof(
    { weight: 3, arbitrary: fc.constant(0) },
    { weight: 1, arbitrary: fc.constantFrom(1, 1000) },
    { weight: 2, arbitrary: fc.integer({ min: 1, max: 5000 }) },
  ),
  maxAttempts: fc.integer({ min: 1, max: 3 }),
  // 0: a backoff nack or reap goes straight back to the tail of the ready list
  backoffMs: fc.constantFrom(0, 1000, 2500),
});

export const leaseMsArb = fc.oneof(
  fc.constantFrom(1000, 3000),
  fc.integer({ min: 1000, max: 5000 }),
);
export const picksArb = fc.array(pickArb, { minLength: 1, maxLength: 3 });

export const nackItemArb: fc.Arbitrary<NackItem> = fc.record({
  pick: pickArb,
  delayMs: fc.oneof(
    fc.constant(undefined),
    fc.constant(0),
    fc.constantFrom(1, 1000),
    fc.integer({ min: 1, max: 4000 }),
  ),
  deadLetter: fc.oneof(
    { weight: 4, arbitrary: fc.constant(false) },
    { weight: 1, arbitrary: fc.constant(true) },
  ),
  error: fc.option(fc.constantFrom("boom", "timeout"), { nil: undefined }),
});

export const enqueueArb = fc
  .array(enqueueItemArb, { minLength: 1, maxLength: 3 })
  .map((items): Cmd => new EnqueueCmd(items));
export const enqueueAndLeaseArb = fc
  .tuple(
    fc.array(enqueueItemArb, { minLength: 1, maxLength: 3 }),
    fc.integer({ min: 1, max: 5 }),
    leaseMsArb,
  )
  .map(([items, max, leaseMs]): Cmd => new EnqueueCmd(items, { max, leaseMs }));
export const leaseArb = fc
  .tuple(fc.integer({ min: 1, max: 5 }), leaseMsArb)
  .map(([max, ms]): Cmd => new LeaseCmd(max, ms));
export const ackArb = picksArb.map((p): Cmd => new AckCmd(p));
export const nackArb = fc
  .array(nackItemArb, { minLength: 1, maxLength: 3 })
  .map((items): Cmd => new NackCmd(items));
export const extendArb = fc
  .array(fc.record({ pick: pickArb, leaseMs: fc.option(leaseMsArb, { nil: undefined }) }), {
    minLength: 1,
    maxLength: 3,
  })
  .map((items): Cmd => new ExtendCmd(items));
export const releaseArb = picksArb.map((p): Cmd => new ReleaseCmd(p));
export const advanceArb = fc
  .oneof(fc.constantFrom(1, 500, 1000), fc.integer({ min: 0, max: 6000 }))
  .map((ms): Cmd => new AdvanceCmd(ms));
export const advanceToArb = fc
  .tuple(
    fc.constantFrom<"deadline" | "runAt">("deadline", "runAt"),
    fc.nat(20),
    fc.constantFrom<-1 | 0 | 1>(-1, 0, 1),
  )
  .map(([target, n, offset]): Cmd => new AdvanceToCmd(target, n, offset));

export const edgeArb = fc
  .tuple(
    fc.nat(20),
    fc.constantFrom<-1 | 0 | 1>(-1, 0, 1),
    fc.constantFrom<EdgeOp>("extend", "ack", "nack", "release", "reap"),
  )
  .map(([n, offset, op]): Cmd => new EdgeCmd(n, offset, op));

/** fc.commands picks uniformly among its arbitraries: repeats weight the mix. */
export const weighted = (n: number, arb: fc.Arbitrary<Cmd>) => Array.from({ length: n }, () => arb);
export const commandArbs: Array<fc.Arbitrary<Cmd>> = [
  ...weighted(3, enqueueArb),
  ...weighted(2, enqueueAndLeaseArb),
  ...weighted(4, leaseArb),
  ...weighted(2, ackArb),
  ...weighted(3, nackArb),
  ...weighted(2, extendArb),
  ...weighted(1, releaseArb),
  ...weighted(2, fc.constant(new ReapCmd())),
  ...weighted(1, fc.constant(new PromoteCmd())),
  ...weighted(2, advanceArb),
  ...weighted(2, advanceToArb),
  ...weighted(2, edgeArb),
];
