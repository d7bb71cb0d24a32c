/** The in-memory model of one queue that the property test compares the engine with. */
import type { ManualClock } from "../clock";
import type { QueueEngine } from "../engine";
import { ScriptCode } from "../errors";
import type { StoredTask, TaskState } from "../task-record";

// ---------------------------------------------------------------- the model

export interface ModelTask {
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
  /** The lease sequence of the delivery its holder ended with a nack, while none ended since. */
  nackedSeq?: number;
}

export interface IssuedToken {
  readonly token: string;
  readonly id: string;
  readonly fence: number;
  readonly name: string;
}

export interface Real {
  readonly engine: QueueEngine;
  readonly clock: ManualClock;
}

/** Ties of a ZSET score are ordered by member, byte-wise; ids are ASCII. */
export function byScoreThenId(score: (t: ModelTask) => number) {
  return (a: ModelTask, b: ModelTask) =>
    score(a) - score(b) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

export class Model {
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
        delete t.nackedSeq;
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
    delete t.nackedSeq;
    const dies = deadLetter || t.attempts >= t.maxAttempts;
    if (dies && reason === "")
      reason = deadLetter
        ? "dead-lettered by a nack that gave no error"
        : "attempts exhausted (the last nack gave no error)";
    if (reason !== "") t.lastError = reason;
    if (dies) {
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
      const state = this.settleFailure(t, reason, delay, deadLetter, front);
      // a release (front) is the server's doing: a nack sent afterwards is stale
      if (!front) t.nackedSeq = tok.fence;
      return { code: ScriptCode.Ok, state };
    }
    const ended = t.state === "READY" || t.state === "SCHEDULED" || t.state === "DEAD";
    const repeat = !front && ended && t.nackedSeq === tok.fence;
    return { code: repeat ? ScriptCode.AlreadyDone : ScriptCode.StaleLease, state: t.state };
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
  reap(): { reaped: number; dead: number; ready: number } {
    const expired = this.inState("LEASED")
      .filter((t) => t.leaseDeadline! < this.now)
      .sort(byScoreThenId((t) => t.leaseDeadline!));
    let dead = 0;
    let ready = 0;
    for (const t of expired) {
      const state = this.settleFailure(t, "lease expired", -1, false, false);
      if (state === "DEAD") dead++;
      else if (state === "READY") ready++;
    }
    return { reaped: expired.length, dead, ready };
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
