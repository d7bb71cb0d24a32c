import { Notifier } from "./notifier";

const q = { command: "C", tenant: "t" };
const never = new AbortController().signal;
const settled = async (p: Promise<void>) => {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
};

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

  it("resolves on abort and on timeout, leaving nothing parked", async () => {
    const n = new Notifier();
    const abort = new AbortController();
    const aborted = n.wait([{ queue: q }], 0, abort.signal, 60_000);
    abort.abort();
    expect(await settled(aborted)).toBe(true);
    await n.wait([{ queue: q }], 0, never, 5);
    expect(n.parked).toBe(0);
  });
});
