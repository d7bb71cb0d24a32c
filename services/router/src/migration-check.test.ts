import type { MigrationSide } from "@codeq/proto";
import type { Migration, ShardMap } from "@codeq/shardmap";
import { sideProblems } from "./migration-check";
import { emptyQueueCounts } from "./queue-counts";

const map = (version: number, migrations: Migration[] = []): ShardMap => ({
  version,
  updatedAtMs: 0,
  shards: {
    a: { endpoint: "127.0.0.1:7001", state: "active" },
    b: { endpoint: "127.0.0.1:7002", state: "active" },
    c: { endpoint: "127.0.0.1:7003", state: "active" },
  },
  defaultShard: "a",
  commands: {},
  tenants: { "X/t1": "b" },
  migrations,
});

const move = (fields: Partial<Migration>): Migration => ({
  id: "mig-1",
  command: "X",
  tenant: "t1",
  from: "a",
  to: "b",
  state: "completed",
  startedAtMs: 1,
  ...fields,
});

const side = (shard: string, fields: Partial<MigrationSide>): MigrationSide => ({
  shard,
  answered: true,
  error: "",
  counts: emptyQueueCounts(),
  moving: 0,
  routed: false,
  unrouted: 0,
  tenants: 0,
  ...fields,
});

test("tasks still reserved for a move that is over are a problem; while it runs they are not", () => {
  const reserved = side("a", { moving: 2 });
  expect(sideProblems([map(5)], move({}), reserved)).toEqual([
    expect.stringMatching(/^shard a holds 2 tasks of X\/t1 reserved for this move, which is over/),
  ]);
  const running = move({ state: "copying" });
  expect(sideProblems([map(5, [running])], running, reserved)).toEqual([]);
});

test("tasks reserved on a shard another unfinished move of the command takes from, in either map, are no problem", () => {
  const reserved = side("a", { moving: 2 });
  const other = move({ id: "mig-2", tenant: "t2", to: "c", state: "copying" });
  expect(sideProblems([map(4, [other]), map(5)], move({}), reserved)).toEqual([]);
  // a move of another command reserves nothing of this one
  const elsewhere = { ...other, command: "Y" };
  expect(sideProblems([map(4, [elsewhere]), map(5)], move({}), reserved)).toHaveLength(1);
});

test("tasks where no router reads them are reported under the map after counting", () => {
  expect(sideProblems([map(4), map(5)], move({}), side("a", { unrouted: 3 }))).toEqual([
    expect.stringMatching(
      /^shard a holds 3 ready, scheduled, leased, dead or reserved tasks of X\/t1 where no router reads them under map version 5,/,
    ),
  ]);
});
