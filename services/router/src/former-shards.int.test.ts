import { freePort, RedisServer, startRelay } from "@codeq/testing";
import { FINISHED_CAP, MigrationStore, type Migration } from "@codeq/shardmap";
import { FormerShards } from "./former-shards";

let server: RedisServer;
let counter = 0;
const stores: MigrationStore[] = [];

beforeAll(async () => {
  server = await RedisServer.start();
});

afterAll(async () => {
  for (const s of stores) await s.close();
  await server.stop();
});

const open = (url = server.url) => {
  const store = new MigrationStore(url, `${server.keyPrefix}-former-${++counter}`);
  stores.push(store);
  return store;
};

let next = 0;
const finished = (
  store: MigrationStore,
  m: Partial<Migration> & Pick<Migration, "command" | "from" | "to">,
) =>
  store.recordFinished({
    migration: {
      id: `m${++next}`,
      state: "completed",
      startedAtMs: 1,
      finishedAtMs: 1_000 + next,
      ...m,
    },
  });

describe("FormerShards", () => {
  test("names the shards finished moves of the queue went from or to", async () => {
    const store = open();
    await finished(store, { command: "X", from: "a", to: "b" });
    await finished(store, { command: "X", tenant: "t2", from: "b", to: "c", state: "aborted" });
    await finished(store, { command: "Y", from: "a", to: "d" });
    const former = new FormerShards(store, () => 1);
    expect((await former.of("X", "t1", false))?.sort()).toEqual(["a", "b"]);
    expect((await former.of("X", "t2", false))?.sort()).toEqual(["a", "b", "c"]);
    expect((await former.of("X", "t1", true))?.sort()).toEqual(["a", "b", "c"]);
    expect(await former.of("Z", "t1", false)).toEqual([]);
  });

  test("reads the history again when the map's version changes, not before", async () => {
    const store = open();
    let version = 1;
    const former = new FormerShards(store, () => version);
    expect(await former.of("X", "t1", false)).toEqual([]);
    await finished(store, { command: "X", from: "a", to: "b" });
    // the move's record came before the map write that took it off the map
    expect(await former.of("X", "t1", false)).toEqual([]);
    version = 2;
    expect((await former.of("X", "t1", false))?.sort()).toEqual(["a", "b"]);
  });

  test("is unknown without a control store, while it does not answer, and when the record is full", async () => {
    expect(await new FormerShards(undefined, () => 1).of("X", "t1", false)).toBeUndefined();
    const down = open(`redis://127.0.0.1:${await freePort()}`);
    expect(await new FormerShards(down, () => 1).of("X", "t1", false)).toBeUndefined();
    // a store that takes the connection and then answers nothing (a stalled host)
    const relay = await startRelay(server.host, server.port);
    try {
      const stalled = open(`redis://127.0.0.1:${relay.port}`);
      await finished(stalled, { command: "X", from: "a", to: "b" });
      relay.silence();
      expect(await new FormerShards(stalled, () => 1).of("X", "t1", false)).toBeUndefined();
    } finally {
      await relay.close();
    }
    // the newest FINISHED_CAP are kept: older moves of the queue may have been dropped
    const full = open();
    for (let i = 0; i < FINISHED_CAP; i++)
      await finished(full, { command: "Y", from: "a", to: "b" });
    expect(await new FormerShards(full, () => 1).of("X", "t1", false)).toBeUndefined();
  });
});
