import { Lifecycle } from "./lifecycle";

describe("Lifecycle", () => {
  it("moves forward only and aborts its signal when draining begins", () => {
    const lifecycle = new Lifecycle();
    const seen: string[] = [];
    lifecycle.onChange((s) => seen.push(s));
    expect(lifecycle.to("serving")).toBe(true);
    expect(lifecycle.signal.aborted).toBe(false);
    expect(lifecycle.to("starting")).toBe(false);
    expect(lifecycle.to("draining")).toBe(true);
    expect(lifecycle.signal.aborted).toBe(true);
    expect(lifecycle.to("serving")).toBe(false);
    expect(lifecycle.to("stopped")).toBe(true);
    expect(seen).toEqual(["serving", "draining", "stopped"]);
  });
});
