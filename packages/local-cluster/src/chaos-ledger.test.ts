import { Ledger } from "./test/chaos-workload";

const d = (at: number, extra: Partial<Parameters<Ledger["deliver"]>[1]> = {}) => ({
  at,
  deadline: at + 1_000,
  worker: "w",
  router: "r1",
  ...extra,
});

describe("the chaos test's ledger", () => {
  test("explains redeliveries by an expired lease or an ended stream", () => {
    const l = new Ledger();
    l.deliver("a", d(0));
    l.deliver("a", d(1_000)); // at the deadline: expired
    l.deliver("b", d(0, { streamEndedAt: 10 }));
    l.deliver("b", d(20)); // after its stream ended: released
    l.deliver("c", d(0, { router: "r2" }));
    l.killedRouters.set("r2", 5);
    l.deliver("c", d(6)); // its router was killed before
    expect(l.audit()).toEqual({ expired: 1, released: 2, violations: [] });
  });

  test("flags a delivery while the previous lease was live, or after a successful ack", () => {
    const l = new Ledger();
    l.deliver("a", d(0));
    l.deliver("a", d(500));
    l.deliver("b", d(0, { ackedOk: true }));
    l.deliver("b", d(2_000));
    const { violations } = l.audit();
    expect(violations).toHaveLength(2);
    expect(violations[0]).toMatch(/^a: .* lease .* was live/);
    expect(violations[1]).toMatch(/^b: .* after a successful ack/);
  });

  test("an ack without an answer, or answered UNAVAILABLE, is a candidate to look up; one refused is not", () => {
    const l = new Ledger();
    l.accepted.set("a", "t1").set("b", "t1").set("c", "t1").set("e", "t1");
    l.deliver("a", d(0, { ackSent: 1 }));
    l.deliver("b", d(0, { ackSent: 1, ackCode: 14 })); // the shard's stream closed before answering
    l.deliver("e", d(0, { ackSent: 1, ackCode: 9 })); // FAILED_PRECONDITION: the lease was gone
    l.acked.add("c");
    expect(l.missing()).toEqual(["a", "b", "e"]);
    expect(l.unheardAcks()).toEqual(["a", "b"]);
  });
});
