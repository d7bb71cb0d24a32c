import { HeldTokens } from "./held-tokens";

describe("HeldTokens", () => {
  it("tracks pushes until each token is settled, in any order", () => {
    const held = new HeldTokens(1_000_000);
    held.add(["a1", "a2"]);
    held.add(["b1"]);
    expect(held.size).toBe(3);
    expect(held.delete("b1")).toBe(true);
    expect(held.delete("a2")).toBe(true);
    expect(held.delete("a2")).toBe(false); // settled already
    expect(held.delete("stranger")).toBe(false);
    expect(held.size).toBe(1);
    expect(held.takeAll()).toEqual(["a1"]);
    expect(held.size).toBe(0);
    expect(held.takeAll()).toEqual([]);
  });

  it("is due a check past its limit, and forgets the checked tokens no longer leased", () => {
    const held = new HeldTokens(5);
    held.add(["a1", "a2"]);
    held.add(["b1", "b2", "b3"]);
    expect(held.checkDue).toBe(false);
    held.add(["c1"]);
    expect(held.checkDue).toBe(true);
    const tokens = held.all();
    expect(tokens).toEqual(["a1", "a2", "b1", "b2", "b3", "c1"]); // oldest push first
    held.add(["d1"]); // pushed while the check runs: not in its answer
    expect(held.checked(tokens, [true, false, false, true, false, true])).toBe(0);
    expect(held.takeAll()).toEqual(["a1", "b2", "c1", "d1"]);
  });

  it("forgets the oldest checked tokens still leased down to its limit, never an unchecked one", () => {
    const held = new HeldTokens(5);
    held.add(["a1", "a2"]);
    held.add(["b1", "b2"]);
    const tokens = held.all();
    held.add(["d1", "d2", "d3", "d4", "d5", "d6"]); // 10 tracked, 4 of them checked
    expect(
      held.checked(
        tokens,
        tokens.map(() => true),
      ),
    ).toBe(4); // only the checked can go
    expect(held.takeAll()).toEqual(["d1", "d2", "d3", "d4", "d5", "d6"]);

    held.add(["e1", "e2", "e3"]);
    held.add(["f1", "f2", "f3"]);
    const all = held.all();
    expect(
      held.checked(
        all,
        all.map(() => true),
      ),
    ).toBe(1); // 6 leased, limit 5: e1 goes
    expect(held.all()).toEqual(["e2", "e3", "f1", "f2", "f3"]);
  });

  it("is due its next check only half its limit after the last, answered or not", () => {
    const held = new HeldTokens(10);
    for (let i = 0; i < 11; i++) held.add([`t${i}`]);
    expect(held.checkDue).toBe(true);
    const all = held.all();
    held.checked(
      all,
      all.map(() => true),
    ); // t0 forgotten: 10 left
    expect(held.checkDue).toBe(false);
    for (let i = 11; i < 16; i++) held.add([`t${i}`]);
    expect(held.checkDue).toBe(false); // 15: not yet
    held.add(["t16"]);
    expect(held.checkDue).toBe(true);
    held.deferCheck(); // the store did not answer: nothing forgotten
    expect(held.size).toBe(16);
    expect(held.checkDue).toBe(false);
    // once checks find most settled, the next is due at the limit again
    const now = held.all();
    held.checked(
      now,
      now.map((_, i) => i < 2),
    );
    expect(held.size).toBe(2);
    for (let i = 0; i < 8; i++) held.add([`u${i}`]);
    expect(held.checkDue).toBe(false);
    held.add(["u8"]);
    expect(held.checkDue).toBe(true);
  });

  it("never holds more than twice its limit, however long a check takes", () => {
    const held = new HeldTokens(5);
    const dropped = Array.from({ length: 10 }, (_, i) => held.add([`p${i}a`, `p${i}b`]));
    expect(dropped).toEqual([0, 0, 0, 0, 0, 2, 2, 2, 2, 2]);
    expect(held.size).toBe(10);
    expect(held.all()).toEqual(
      [5, 6, 7, 8, 9].flatMap((i) => [`p${i}a`, `p${i}b`]), // the oldest pushes went
    );
    expect(held.add(["q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8", "q9", "q10", "q11"])).toBe(10);
    expect(held.size).toBe(11); // a newest push alone over the cap is kept
  });

  it("ignores an empty push", () => {
    const held = new HeldTokens(1_000_000);
    held.add([]);
    expect(held.size).toBe(0);
    expect(held.takeAll()).toEqual([]);
  });

  it("merges the oldest pushes, not the newest, when pushes outnumber its sets", () => {
    const held = new HeldTokens(1_000_000);
    for (let i = 0; i < 40; i++) held.add([`old${i}`]); // never acked
    held.add(["new"]);
    expect(held.delete("new")).toBe(true);
    expect(held.size).toBe(40);
    // the newest pushes still come and go in Sets of their own
    for (let i = 0; i < 100; i++) {
      held.add([`a${i}`, `b${i}`]);
      expect(held.delete(`a${i}`)).toBe(true);
      expect(held.delete(`b${i}`)).toBe(true);
    }
    expect(held.takeAll().sort()).toEqual(Array.from({ length: 40 }, (_, i) => `old${i}`).sort());
  });

  it("keeps every token when pushes outnumber its sets", () => {
    const held = new HeldTokens(1_000_000);
    const tokens = Array.from({ length: 1000 }, (_, i) => `t${i}`);
    for (const t of tokens) held.add([t]);
    expect(held.size).toBe(1000);
    for (const t of tokens.slice(0, 500)) expect(held.delete(t)).toBe(true);
    expect(held.takeAll().sort()).toEqual(tokens.slice(500).sort());
  });
});
