import { SeqWindow } from "./seq-window";

describe("SeqWindow", () => {
  it("holds values by growing seq, and gives the oldest first", () => {
    const w = new SeqWindow<string>();
    w.set(5, "five");
    w.set(6, "six");
    w.set(9, "nine"); // 7 and 8 went to another stream
    expect(w.size).toBe(3);
    expect(w.get(6)).toBe("six");
    expect(w.get(7)).toBeUndefined();
    expect(w.get(4)).toBeUndefined();
    expect(w.get(10)).toBeUndefined();
    expect(w.oldest()).toEqual({ seq: 5, value: "five" });
    expect(w.delete(6)).toBe(true); // out of turn: a hole
    expect(w.delete(6)).toBe(false);
    expect(w.oldest()).toEqual({ seq: 5, value: "five" });
    expect(w.delete(5)).toBe(true);
    expect(w.oldest()).toEqual({ seq: 9, value: "nine" });
    expect(w.size).toBe(1);
    expect(w.takeAll()).toEqual(["nine"]);
    expect(w.size).toBe(0);
    expect(w.oldest()).toBeUndefined();
  });

  it("refuses a seq that is not past the window", () => {
    const w = new SeqWindow<number>();
    w.set(10, 10);
    expect(() => w.set(10, 10)).toThrow(/not past the window/);
    expect(() => w.set(3, 3)).toThrow(/not past the window/);
  });

  it("starts afresh once empty", () => {
    const w = new SeqWindow<number>();
    w.set(1, 1);
    w.delete(1);
    w.set(100, 100);
    expect(w.oldest()).toEqual({ seq: 100, value: 100 });
  });

  it("agrees with a Map over a long run of sets and deletes in any order", () => {
    const w = new SeqWindow<number>();
    const m = new Map<number, number>();
    let seq = 0;
    let rnd = 7;
    const next = () => (rnd = (rnd * 1103515245 + 12345) % 2 ** 31);
    for (let step = 0; step < 20_000; step++) {
      if (next() % 3 !== 0 || m.size === 0) {
        seq += 1 + (next() % 4 === 0 ? next() % 5 : 0);
        w.set(seq, seq);
        m.set(seq, seq);
      } else {
        const keys = [...m.keys()];
        const k = next() % 2 === 0 ? keys[0]! : keys[next() % keys.length]!;
        expect(w.delete(k)).toBe(true);
        m.delete(k);
      }
      expect(w.size).toBe(m.size);
      const first = m.keys().next();
      expect(w.oldest()?.seq).toBe(first.done ? undefined : first.value);
    }
    for (const [k, v] of m) expect(w.get(k)).toBe(v);
    expect(w.takeAll()).toEqual([...m.values()]);
  });
});
