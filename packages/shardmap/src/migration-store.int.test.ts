import { RedisServer } from "@codeq/testing";
import { MigrationStore } from "./migration-store";

let server: RedisServer;
beforeAll(async () => {
  server = await RedisServer.start();
});
afterAll(async () => {
  await server.stop();
});

describe("MigrationStore", () => {
  it("fails a record of a finished migration that the store refused, rather than taking it as kept", async () => {
    const prefix = `${server.keyPrefix}-refused`;
    const store = new MigrationStore(server.url, prefix);
    const raw = server.client();
    try {
      // the record's hash is not a hash: MULTI answers WRONGTYPE for that command alone
      await raw.set(`${prefix}:ctl:migrations:done`, "not a hash");
      await expect(
        store.recordFinished({
          migration: {
            id: "m1",
            command: "X",
            from: "a",
            to: "b",
            state: "completed",
            startedAtMs: 1,
            finishedAtMs: 2,
          },
        }),
      ).rejects.toThrow(/WRONGTYPE/);
    } finally {
      raw.disconnect();
      await store.close();
    }
  });
});
