import { HeldTokens } from "./held-tokens";

describe("HeldTokens", () => {
  it("tracks pushes until each token is settled, in any order", () => {
    const held = new HeldTokens();
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

  it("ignores an empty push", () => {
    const held = new HeldTokens();
    held.add([]);
    expect(held.size).toBe(0);
    expect(held.takeAll()).toEqual([]);
  });

  it("keeps every token when pushes outnumber its sets", () => {
    const held = new HeldTokens();
    const tokens = Array.from({ length: 1000 }, (_, i) => `t${i}`);
    for (const t of tokens) held.add([t]);
    expect(held.size).toBe(1000);
    for (const t of tokens.slice(0, 500)) expect(held.delete(t)).toBe(true);
    expect(held.takeAll().sort()).toEqual(tokens.slice(500).sort());
  });
});
