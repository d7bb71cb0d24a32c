import { Kick } from "./kick";

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
});
