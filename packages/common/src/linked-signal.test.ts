import { getEventListeners } from "node:events";
import { linkedSignal } from "./linked-signal";

describe("linkedSignal", () => {
  it("aborts with the first source's reason, and leaves no listener once disposed", () => {
    const a = new AbortController();
    const b = new AbortController();
    const linked = linkedSignal([a.signal, b.signal]);
    expect(getEventListeners(a.signal, "abort")).toHaveLength(1);
    b.abort(new Error("b went"));
    expect(linked.signal.aborted).toBe(true);
    expect((linked.signal.reason as Error).message).toBe("b went");
    a.abort(new Error("a went"));
    expect((linked.signal.reason as Error).message).toBe("b went");
    linked.dispose();
    const c = new AbortController();
    const unused = linkedSignal([c.signal]);
    unused.dispose();
    expect(getEventListeners(c.signal, "abort")).toHaveLength(0);
    expect(unused.signal.aborted).toBe(false);
  });

  it("is aborted at once when a source already is", () => {
    const done = AbortSignal.abort(new Error("gone"));
    const live = new AbortController();
    const linked = linkedSignal([live.signal, done]);
    expect(linked.signal.aborted).toBe(true);
    linked.dispose();
    expect(getEventListeners(live.signal, "abort")).toHaveLength(0);
  });
});
