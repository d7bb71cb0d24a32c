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

  it("is over its limit past it, and forgets what it is told", () => {
    const held = new HeldTokens(5);
    held.add(["a1", "a2"]);
    held.add(["b1", "b2", "b3"]);
    expect(held.overLimit).toBe(false);
    held.add(["c1"]);
    expect(held.overLimit).toBe(true);
    expect(held.all()).toEqual(["a1", "a2", "b1", "b2", "b3", "c1"]); // oldest push first
    held.forget(["a2", "b1", "b3", "stranger"]);
    expect(held.size).toBe(3);
    expect(held.overLimit).toBe(false);
    expect(held.trim()).toBe(0);
    expect(held.takeAll()).toEqual(["a1", "b2", "c1"]);
  });

  it("trims the oldest pushes down to its limit, keeping a newest push over it alone", () => {
    const held = new HeldTokens(5);
    held.add(["a1", "a2"]);
    held.add(["b1", "b2"]);
    held.add(["c1", "c2"]); // 6 > 5
    expect(held.size).toBe(6); // nothing forgotten before it is told to
    expect(held.trim()).toBe(2); // the a push goes
    expect(held.size).toBe(4);
    expect(held.delete("a1")).toBe(false);
    held.add(["d1", "d2", "d3", "d4", "d5", "d6"]);
    expect(held.trim()).toBe(4);
    expect(held.takeAll().sort()).toEqual(["d1", "d2", "d3", "d4", "d5", "d6"]);
  });

  it("never holds more than twice its limit, however long a check takes", () => {
    const held = new HeldTokens(5);
    for (let i = 0; i < 10; i++) held.add([`p${i}a`, `p${i}b`]);
    expect(held.size).toBe(10);
    expect(held.all()).toEqual(
      [5, 6, 7, 8, 9].flatMap((i) => [`p${i}a`, `p${i}b`]), // the oldest pushes went
    );
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
