import { SeqWindow } from "./seq-window";

type Box = { readonly v: number };
const box = (v: number): Box => ({ v });

describe("SeqWindow", () => {
  it("holds values by growing seq, and gives the oldest first", () => {
    const w = new SeqWindow<Box>();
    w.set(5, box(5));
    w.set(6, box(6));
    w.set(9, box(9)); // seqs 7 and 8 skipped
    expect(w.size).toBe(3);
    expect(w.get(6)).toEqual(box(6));
    expect(w.get(7)).toBeUndefined();
    expect(w.get(4)).toBeUndefined();
    expect(w.get(10)).toBeUndefined();
    expect(w.oldest()).toEqual({ seq: 5, value: box(5) });
    expect(w.delete(6)).toBe(true); // out of turn: a hole
    expect(w.delete(6)).toBe(false);
    expect(w.oldest()).toEqual({ seq: 5, value: box(5) });
    expect(w.delete(5)).toBe(true);
    expect(w.oldest()).toEqual({ seq: 9, value: box(9) });
    expect(w.size).toBe(1);
    expect(w.takeAll()).toEqual([box(9)]);
    expect(w.size).toBe(0);
    expect(w.oldest()).toBeUndefined();
  });

  it("refuses a seq that is not past the window", () => {
    const w = new SeqWindow<Box>();
    w.set(10, box(10));
    expect(() => w.set(10, box(10))).toThrow(/not past the window/);
    expect(() => w.set(3, box(3))).toThrow(/not past the window/);
  });

  it("starts afresh once empty", () => {
    const w = new SeqWindow<Box>();
    w.set(1, box(1));
    w.delete(1);
    w.set(100, box(100));
    expect(w.oldest()).toEqual({ seq: 100, value: box(100) });
  });

  it("agrees with a Map over a long run of sets and deletes in any order", () => {
    const w = new SeqWindow<Box>();
    const m = new Map<number, Box>();
    let seq = 0;
    let rnd = 7;
    const next = () => (rnd = (rnd * 1103515245 + 12345) % 2 ** 31);
    for (let step = 0; step < 20_000; step++) {
      if (next() % 3 !== 0 || m.size === 0) {
        seq += 1 + (next() % 4 === 0 ? next() % 5 : 0);
        const value = box(seq);
        w.set(seq, value);
        m.set(seq, value);
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
