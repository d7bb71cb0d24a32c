import { cleanUpOnFailure } from "./clean-up-on-failure";

describe("cleanUpOnFailure", () => {
  it("returns what the start gives, and cleans nothing up", async () => {
    let cleaned = 0;
    await expect(
      cleanUpOnFailure(
        async () => 7,
        async () => cleaned++,
      ),
    ).resolves.toBe(7);
    expect(cleaned).toBe(0);
  });

  it("cleans up after a failed start and throws the start's error, not the clean-up's", async () => {
    let cleaned = 0;
    const failed = new Error("address in use");
    await expect(
      cleanUpOnFailure(
        async () => {
          throw failed;
        },
        async () => {
          cleaned++;
          throw new Error("clean-up failed too");
        },
      ),
    ).rejects.toBe(failed);
    expect(cleaned).toBe(1);
  });
});
