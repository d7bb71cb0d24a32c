import { Notifier, type Taker } from "./notifier";

const q = { command: "C", tenant: "t" };
const never = new AbortController().signal;
const settled = async (p: Promise<unknown>) => {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
};

/** A stream-like taker with `credits`, setting aside `batch` per handoff. */
function taker(credits: number, batch: number): Taker & { credits: number } {
  return {
    credits,
    get available() {
      return this.credits;
    },
    reserve() {
      const max = Math.min(this.credits, batch);
      if (max <= 0) return undefined;
      this.credits -= max;
      return { max, leaseMs: 30_000, maxBytes: 1 << 22 };
    },
    deliver(deliveries, reserved) {
      this.credits += reserved - deliveries.length;
    },
  };
}

describe("Notifier", () => {
  it("wakes a parked waiter on notify, and never parks one that missed a notification", async () => {
    const n = new Notifier();
    const seen = n.version([{ queue: q }]);
    const parked = n.wait([{ queue: q }], seen, never, 60_000);
    expect(await settled(parked)).toBe(false);
    n.notify(q, 1);
    expect(await settled(parked)).toBe(true);
    // a waiter that read the version before the notify returns at once
    expect(await settled(n.wait([{ queue: q }], seen, never, 60_000))).toBe(true);
    expect(n.parked).toBe(0);
  });

  it("wakes waiters oldest first until their capacities cover the tasks", async () => {
    const n = new Notifier();
    const seen = n.version([{ queue: q }]);
    const big = n.wait([{ queue: q }], seen, never, 60_000, 500);
    const small1 = n.wait([{ queue: q }], seen, never, 60_000, 1);
    const small2 = n.wait([{ queue: q }], seen, never, 60_000, 1);
    n.notify(q, 100);
    expect(await settled(big)).toBe(true);
    expect(await settled(small1)).toBe(false);
    expect(n.parked).toBe(2);
    n.notify(q, 2);
    expect([await settled(small1), await settled(small2)]).toEqual([true, true]);
  });

  it("tells a woken waiter the queue it was woken for; the safety net and a timeout tell none", async () => {
    const n = new Notifier();
    const a = { command: "A", tenant: "t" };
    const b = { command: "B", tenant: "t" };
    const topics = [{ queue: a }, { queue: b }];
    const woken = n.wait(topics, n.version(topics), never, 60_000);
    n.notify(b, 1);
    expect(await woken).toEqual(b);
    const rewoken = n.wait(topics, n.version(topics), never, 60_000);
    n.wakeOnePerTopic();
    expect(await rewoken).toBeUndefined();
    expect(await n.wait(topics, n.version(topics), never, 1)).toBeUndefined();
  });

  it("wakes cross-tenant waiters of the command, and not waiters of other queues", async () => {
    const n = new Notifier();
    const all = n.wait([{ command: "C" }], n.version([{ command: "C" }]), never, 60_000);
    const stop = new AbortController();
    const other = n.wait([{ queue: { command: "D", tenant: "t" } }], 0, stop.signal, 60_000);
    n.notify(q, 1);
    expect(await settled(all)).toBe(true);
    expect(await settled(other)).toBe(false);
    stop.abort();
    await other;
  });

  it("the safety-net re-wake moves every parked topic's version, so woken waiters lease again", async () => {
    const n = new Notifier();
    const seen = n.version([{ queue: q }]);
    const parked = n.wait([{ queue: q }], seen, never, 60_000);
    n.wakeOnePerTopic();
    expect(await settled(parked)).toBe(true);
    expect(n.version([{ queue: q }])).not.toBe(seen);
  });

  it("forgets the versions of topics nobody waits on, and no earlier version comes back", async () => {
    const n = new Notifier();
    const queues = Array.from({ length: 100 }, (_, i) => ({ command: "C", tenant: `t${i}` }));
    for (const queue of queues) n.notify(queue, 1);
    expect(n.topicsKnown).toBe(101); // each queue, and the command
    const topics = [{ queue: queues[5]! }, { queue: queues[6]! }];
    const seen = n.version(topics);
    const parked = n.wait([{ queue: q }], n.version([{ queue: q }]), never, 60_000);
    n.wakeOnePerTopic(); // the tenants are gone: only q, which has a waiter, is kept
    expect(await settled(parked)).toBe(true);
    expect(n.topicsKnown).toBe(1);
    expect(n.version(topics)).not.toBe(seen);
    n.notify(queues[5]!, 1);
    expect(n.version(topics)).toBeGreaterThan(seen);
  });

  it("a notification between a waiter's read and its parking is not lost when its topic is forgotten", async () => {
    const n = new Notifier();
    const topics = [{ queue: q }];
    const seen = n.version(topics); // the waiter leases, and finds nothing
    n.notify(q, 1); // an enqueue; nobody is parked yet
    n.wakeOnePerTopic(); // nobody waits on q: forgotten
    expect(await settled(n.wait(topics, seen, never, 60_000))).toBe(true);
  });

  it("resolves on abort and on timeout, leaving nothing parked", async () => {
    const n = new Notifier();
    const abort = new AbortController();
    const aborted = n.wait([{ queue: q }], 0, abort.signal, 60_000);
    abort.abort();
    expect(await settled(aborted)).toBe(true);
    await n.wait([{ queue: q }], 0, never, 5);
    expect(n.parked).toBe(0);
  });

  it("claims parked takers in turn, leaving them parked, while their credits last", async () => {
    const n = new Notifier();
    const seen = n.version([{ queue: q }]);
    const [a, b] = [taker(4, 2), taker(2, 2)];
    const parkedA = n.wait([{ queue: q }], seen, never, Infinity, a);
    const parkedB = n.wait([{ queue: q }], seen, never, Infinity, b);
    const claims = [n.claim(q), n.claim(q), n.claim(q), n.claim(q)];
    expect(claims.map((c) => c && (c.taker === a ? "a" : "b"))).toEqual(["a", "b", "a", undefined]);
    expect(claims.map((c) => c?.reserved.max)).toEqual([2, 2, 2, undefined]);
    // nobody was woken and no version moved
    expect([await settled(parkedA), await settled(parkedB)]).toEqual([false, false]);
    expect(n.version([{ queue: q }])).toBe(seen);
    expect(n.parked).toBe(2);
  });

  it("does not wake a taker with no credits available, nor count it, on notify or the safety net", async () => {
    const n = new Notifier();
    const seen = n.version([{ queue: q }]);
    const spent = taker(2, 2);
    const stream = n.wait([{ queue: q }], seen, never, Infinity, spent);
    n.claim(q); // both credits set aside
    const poll = n.wait([{ queue: q }], seen, never, 60_000, 1);
    n.notify(q, 1);
    expect([await settled(stream), await settled(poll)]).toEqual([false, true]);
    n.wakeOnePerTopic();
    expect(await settled(stream)).toBe(false);
    // the version moved: once its credits are back, the stream's pump leases
    expect(n.version([{ queue: q }])).not.toBe(seen);
  });
});
