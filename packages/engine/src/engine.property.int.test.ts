/**
 * Model-based property test of one queue: random interleavings of enqueue, lease,
 * ack, nack, extend, release, reap, promote and clock steps run against the real
 * engine (Lua scripts on a real redis-server) and against a small in-memory model
 * of SPEC §2. After every step the whole queue is compared with the model: the
 * counts of every state and per priority, every task record, and the due index.
 *
 * Tasks are named T1, T2… in enqueue order and tokens T<n>#<fence>, so a shrunk
 * counterexample reads as a story; the error message carries the resolved trace.
 */
import fc from "fast-check";
import type { ManualClock } from "./clock";
import type { QueueEngine } from "./engine";
import { ScriptCode } from "./errors";
import type { StoredTask, TaskState } from "./task-record";
import { engineFixture, Q, type EngineFixture } from "./test/fixture";

// ---------------------------------------------------------------- the model

interface ModelTask {
  readonly label: string;
  readonly id: string;
  readonly priority: number;
  readonly maxAttempts: number;
  /** The fixed backoff delay, ms (kind fixed, no jitter: predictable). */
  readonly backoffMs: number;
  state: TaskState;
  attempts: number;
  leaseSeq: number;
  runAt: number;
  leaseDeadline?: number;
  leaseMs?: number;
  lastError?: string;
  doneAt?: number;
}

interface IssuedToken {
  readonly token: string;
  readonly id: string;
  readonly fence: number;
  readonly name: string;
}

interface Real {
  readonly engine: QueueEngine;
  readonly clock: ManualClock;
}

/** Ties of a ZSET score are ordered by member, byte-wise; ids are ASCII. */
function byScoreThenId(score: (t: ModelTask) => number) {
  return (a: ModelTask, b: ModelTask) =>
    score(a) - score(b) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

class Model {
  readonly tasks = new Map<string, ModelTask>();
  /** READY ids per priority, head first. */
  readonly ready: string[][] = Array.from({ length: 10 }, () => []);
  /** Every token ever issued, in issue order. */
  readonly tokens: IssuedToken[] = [];
  readonly trace: string[] = [];

  constructor(private readonly clock: ManualClock) {}

  get now(): number {
    return this.clock.now();
  }

  task(id: string): ModelTask {
    const t = this.tasks.get(id);
    if (!t) throw new Error(`model: unknown id ${id}`);
    return t;
  }

  label(id: string): string {
    return this.tasks.get(id)?.label ?? `?${id}`;
  }

  inState(state: TaskState): ModelTask[] {
    return [...this.tasks.values()].filter((t) => t.state === state);
  }

  isLive(tok: IssuedToken): boolean {
    const t = this.task(tok.id);
    return t.state === "LEASED" && t.leaseSeq === tok.fence;
  }

  add(t: ModelTask): void {
    this.tasks.set(t.id, t);
    if (t.state === "READY") this.ready[t.priority]!.push(t.id);
  }

  /** promote-due.lua: due SCHEDULED tasks to the tail of their list, in (run-at, id) order. */
  promoteDue(): ModelTask[] {
    const due = this.inState("SCHEDULED")
      .filter((t) => t.runAt <= this.now)
      .sort(byScoreThenId((t) => t.runAt));
    for (const t of due) {
      t.state = "READY";
      this.ready[t.priority]!.push(t.id);
    }
    return due;
  }

  /** lease-16.lua: promote, then pop from priority 9 down to 0, FIFO within one. */
  lease(max: number, leaseMs: number): ModelTask[] {
    this.promoteDue();
    const out: ModelTask[] = [];
    for (let p = 9; p >= 0 && out.length < max; p--) {
      const list = this.ready[p]!;
      while (out.length < max && list.length > 0) {
        const t = this.task(list.shift()!);
        t.state = "LEASED";
        t.attempts += 1;
        t.leaseSeq += 1;
        t.leaseDeadline = this.now + leaseMs;
        t.leaseMs = leaseMs;
        out.push(t);
      }
    }
    return out;
  }

  /** settle-failure.lua. `delay` < 0: the task's backoff. */
  settleFailure(
    t: ModelTask,
    reason: string,
    delay: number,
    deadLetter: boolean,
    front: boolean,
  ): TaskState {
    delete t.leaseDeadline;
    delete t.leaseMs;
    if (reason !== "") t.lastError = reason;
    if (deadLetter || t.attempts >= t.maxAttempts) {
      t.state = "DEAD";
      t.doneAt = this.now;
      return t.state;
    }
    if (delay < 0) delay = t.backoffMs;
    if (delay === 0) {
      t.state = "READY";
      t.runAt = this.now;
      if (front) this.ready[t.priority]!.unshift(t.id);
      else this.ready[t.priority]!.push(t.id);
    } else {
      t.state = "SCHEDULED";
      t.runAt = this.now + delay;
    }
    return t.state;
  }

  ack(tok: IssuedToken): ScriptCode {
    const t = this.task(tok.id);
    if (t.state === "LEASED" && t.leaseSeq === tok.fence) {
      t.state = "COMPLETED";
      t.doneAt = this.now;
      delete t.leaseDeadline;
      delete t.leaseMs;
      return ScriptCode.Ok;
    }
    if (t.state === "COMPLETED" && t.leaseSeq === tok.fence) return ScriptCode.AlreadyDone;
    return ScriptCode.StaleLease;
  }

  nack(
    tok: IssuedToken,
    delay: number,
    deadLetter: boolean,
    front: boolean,
    reason: string,
  ): { code: ScriptCode; state: TaskState } {
    const t = this.task(tok.id);
    if (t.state === "LEASED" && t.leaseSeq === tok.fence) {
      return {
        code: ScriptCode.Ok,
        state: this.settleFailure(t, reason, delay, deadLetter, front),
      };
    }
    return { code: ScriptCode.StaleLease, state: t.state };
  }

  extend(tok: IssuedToken, leaseMs: number): { code: ScriptCode; deadline?: number } {
    const t = this.task(tok.id);
    if (t.state !== "LEASED" || t.leaseSeq !== tok.fence) return { code: ScriptCode.StaleLease };
    if (t.leaseDeadline! < this.now) return { code: ScriptCode.LeaseExpired };
    const duration = leaseMs > 0 ? leaseMs : t.leaseMs!;
    t.leaseDeadline = this.now + duration;
    t.leaseMs = duration;
    return { code: ScriptCode.Ok, deadline: t.leaseDeadline };
  }

  /** reap-15.lua: leases with deadline strictly before now, in (deadline, id) order. */
  reap(): { reaped: number; dead: number } {
    const expired = this.inState("LEASED")
      .filter((t) => t.leaseDeadline! < this.now)
      .sort(byScoreThenId((t) => t.leaseDeadline!));
    let dead = 0;
    for (const t of expired) {
      if (this.settleFailure(t, "lease expired", -1, false, false) === "DEAD") dead++;
    }
    return { reaped: expired.length, dead };
  }

  /** The model's own consistency: each READY task in exactly one list slot, nothing else there. */
  selfCheck(): void {
    const listed = this.ready.flat();
    const readyIds = new Set(this.inState("READY").map((t) => t.id));
    if (listed.length !== new Set(listed).size || listed.length !== readyIds.size)
      throw new Error("model: ready lists inconsistent");
    for (const id of listed) {
      if (!readyIds.has(id)) throw new Error(`model: ${this.label(id)} listed but not READY`);
    }
  }
}

// ---------------------------------------------------------------- comparison

function fail(what: string, expected: unknown, actual: unknown): never {
  throw new Error(
    `${what}\n  expected: ${JSON.stringify(expected)}\n  actual:   ${JSON.stringify(actual)}`,
  );
}

function same(what: string, actual: unknown, expected: unknown): void {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) fail(what, expected, actual);
}

/** The fields the model predicts, in a fixed key order so JSON comparison is exact. */
function project(t: ModelTask | StoredTask) {
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
async function checkAll(m: Model, r: Real): Promise<void> {
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
interface Pick {
  readonly kind: "live" | "any" | "forged";
  readonly n: number;
}

const pickArb: fc.Arbitrary<Pick> = fc.record({
  kind: fc.constantFrom<Pick["kind"]>("live", "live", "any", "any", "forged"),
  n: fc.nat(50),
});

const showPick = (p: Pick) => `${p.kind}#${p.n}`;

interface Resolved {
  readonly token: string;
  /** Undefined for a forged token: the engine must answer NotFound. */
  readonly issued?: IssuedToken;
  readonly name: string;
}

function resolve(m: Model, p: Pick): Resolved {
  const all = m.tokens;
  const live = all.filter((t) => m.isLive(t));
  const from = p.kind === "live" && live.length > 0 ? live : all;
  const tok = from[p.n % from.length]!;
  if (p.kind !== "forged") return { token: tok.token, issued: tok, name: tok.name };
  const last = tok.token.at(-1) === "A" ? "B" : "A";
  return { token: tok.token.slice(0, -1) + last, name: `forged(${tok.name})` };
}

// ---------------------------------------------------------------- commands

type Cmd = fc.AsyncCommand<Model, Real>;

/** Runs one step, then compares everything; a failure carries the trace of the run. */
async function step(m: Model, r: Real, body: () => Promise<string>): Promise<void> {
  try {
    m.trace.push(`@${m.now - START} ${await body()}`);
    await checkAll(m, r);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`${message}\ntrace (time relative to start):\n  ${m.trace.join("\n  ")}`);
  }
}

const START = 1_700_000_000_000; // the ManualClock's default start

interface EnqueueItem {
  readonly priority: number;
  readonly delayMs: number;
  readonly maxAttempts: number;
  readonly backoffMs: number;
}

class EnqueueCmd implements Cmd {
  constructor(readonly items: readonly EnqueueItem[]) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    await step(m, r, async () => {
      const first = m.tasks.size + 1;
      const labels = this.items.map((_, i) => `T${first + i}`);
      const out = await r.engine.enqueue(
        Q,
        this.items.map((it, i) => ({
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
        })),
      );
      out.forEach((o, i) => {
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
      return `${this} → ${labels.join(", ")}`;
    });
  }
  toString(): string {
    const show = (it: EnqueueItem) =>
      `p${it.priority}${it.delayMs ? ` delay=${it.delayMs}` : ""} max=${it.maxAttempts} backoff=${it.backoffMs}`;
    return `enqueue(${this.items.map(show).join("; ")})`;
  }
}

/** Leases and checks the exact deliveries (order, attempts, fences, deadlines, payloads). */
async function leaseAndCompare(m: Model, r: Real, max: number, leaseMs: number): Promise<string> {
  const got = await r.engine.lease(Q, { max, leaseMs });
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

class LeaseCmd implements Cmd {
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

class AckCmd implements Cmd {
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

interface NackItem {
  readonly pick: Pick;
  /** undefined: the task's backoff. */
  readonly delayMs: number | undefined;
  readonly deadLetter: boolean;
  readonly error: string | undefined;
}

class NackCmd implements Cmd {
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

class ExtendCmd implements Cmd {
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

class ReleaseCmd implements Cmd {
  constructor(readonly picks: readonly Pick[]) {}
  check = (m: Readonly<Model>) => m.tokens.length > 0;
  async run(m: Model, r: Real): Promise<void> {
    await step(m, r, async () => {
      const items = this.picks.map((p) => resolve(m, p));
      const got = await r.engine.release(items.map((it) => it.token));
      const want = items.map((it) =>
        it.issued
          ? m.nack(it.issued, 0, false, true, "lease released")
          : { code: ScriptCode.NotFound, state: undefined },
      );
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

class ReapCmd implements Cmd {
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

class PromoteCmd implements Cmd {
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

class AdvanceCmd implements Cmd {
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
class AdvanceToCmd implements Cmd {
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

type EdgeOp = "extend" | "ack" | "nack" | "release" | "reap";

/**
 * The lease-expiry boundary in one go: the clock to one lease's deadline -1, 0 or +1,
 * then one action on that lease's current token (or a reap). At the deadline an extend
 * is still allowed; after it, extend is refused but ack and nack are accepted until a
 * reap (which takes only deadlines strictly before now) has taken the lease back.
 */
class EdgeCmd implements Cmd {
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

const enqueueItemArb: fc.Arbitrary<EnqueueItem> = fc.record({
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

const leaseMsArb = fc.oneof(fc.constantFrom(1000, 3000), fc.integer({ min: 1000, max: 5000 }));
const picksArb = fc.array(pickArb, { minLength: 1, maxLength: 3 });

const nackItemArb: fc.Arbitrary<NackItem> = fc.record({
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

const enqueueArb = fc
  .array(enqueueItemArb, { minLength: 1, maxLength: 3 })
  .map((items): Cmd => new EnqueueCmd(items));
const leaseArb = fc
  .tuple(fc.integer({ min: 1, max: 5 }), leaseMsArb)
  .map(([max, ms]): Cmd => new LeaseCmd(max, ms));
const ackArb = picksArb.map((p): Cmd => new AckCmd(p));
const nackArb = fc
  .array(nackItemArb, { minLength: 1, maxLength: 3 })
  .map((items): Cmd => new NackCmd(items));
const extendArb = fc
  .array(fc.record({ pick: pickArb, leaseMs: fc.option(leaseMsArb, { nil: undefined }) }), {
    minLength: 1,
    maxLength: 3,
  })
  .map((items): Cmd => new ExtendCmd(items));
const releaseArb = picksArb.map((p): Cmd => new ReleaseCmd(p));
const advanceArb = fc
  .oneof(fc.constantFrom(1, 500, 1000), fc.integer({ min: 0, max: 6000 }))
  .map((ms): Cmd => new AdvanceCmd(ms));
const advanceToArb = fc
  .tuple(
    fc.constantFrom<"deadline" | "runAt">("deadline", "runAt"),
    fc.nat(20),
    fc.constantFrom<-1 | 0 | 1>(-1, 0, 1),
  )
  .map(([target, n, offset]): Cmd => new AdvanceToCmd(target, n, offset));

const edgeArb = fc
  .tuple(
    fc.nat(20),
    fc.constantFrom<-1 | 0 | 1>(-1, 0, 1),
    fc.constantFrom<EdgeOp>("extend", "ack", "nack", "release", "reap"),
  )
  .map(([n, offset, op]): Cmd => new EdgeCmd(n, offset, op));

/** fc.commands picks uniformly among its arbitraries: repeats weight the mix. */
const weighted = (n: number, arb: fc.Arbitrary<Cmd>) => Array.from({ length: n }, () => arb);
const commandArbs: Array<fc.Arbitrary<Cmd>> = [
  ...weighted(3, enqueueArb),
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

// ---------------------------------------------------------------- the property

describe("queue engine against a model (fast-check)", () => {
  let fx: EngineFixture;
  beforeAll(async () => (fx = await engineFixture()));
  afterAll(() => fx.close());

  it("loses, duplicates or double-leases no task, keeps priority/FIFO order, attempts and DLQ moves", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.noBias(fc.commands(commandArbs, { maxCommands: 40, size: "max" })),
        async (cmds) => {
          // A fresh engine (own key prefix, own clock) per run; completed tasks outlive the
          // run. Its connection is closed by fx.close() (closing it twice leaks a timer).
          const { engine, clock } = await fx.engine({ completedRetentionMs: 24 * 3600_000 });
          const real = { engine, clock };
          const model = new Model(clock);
          await fc.asyncModelRun(() => ({ model, real }), cmds);
          // Drain whatever is ready or due: the full order must be the model's.
          await step(model, real, () => leaseAndCompare(model, real, 1000, 1000));
        },
      ),
      { numRuns: 100 },
    );
  }, 120_000);
});
