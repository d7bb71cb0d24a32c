import { Kick, onFirstAbort } from "./kick";

describe("Kick", () => {
  it("calls each listener once when fired, and resolves waits, also those made after", async () => {
    const kick = new Kick();
    const calls: string[] = [];
    const removed = () => calls.push("removed");
    kick.addEventListener("abort", () => calls.push("a"));
    kick.addEventListener("abort", removed);
    kick.removeEventListener("abort", removed);
    const before = kick.wait().then(() => calls.push("waited"));
    expect(kick.aborted).toBe(false);
    kick.fire();
    kick.fire();
    await before;
    await kick.wait();
    expect(kick.aborted).toBe(true);
    expect(calls).toEqual(["a", "waited"]);
  });

  it("onFirstAbort fires on whichever signal aborts first, at once if one has, and not after dispose", () => {
    const [a, b] = [new AbortController(), new AbortController()];
    const first = onFirstAbort([a.signal, b.signal]);
    b.abort();
    expect(first.kick.aborted).toBe(true);
    first.dispose();
    expect(onFirstAbort([a.signal, b.signal]).kick.aborted).toBe(true);
    const c = new AbortController();
    const later = onFirstAbort([a.signal, c.signal]);
    expect(later.kick.aborted).toBe(false);
    later.dispose();
    c.abort();
    expect(later.kick.aborted).toBe(false);
  });
});
