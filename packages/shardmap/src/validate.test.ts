import { assertShardMap, validateShardMap } from "./validate";
import { ShardMapError } from "./errors";
import type { Migration, ShardMap } from "./shard-map";
import { prepareWrite } from "./source";
import { change, draft } from "./test/fixtures";

const map = (overrides: Record<string, unknown> = {}): ShardMap =>
  ({ version: 3, updatedAtMs: 1_700_000_000_000, ...draft(), ...overrides }) as ShardMap;

const migration = (overrides: Partial<Migration> = {}): Migration => ({
  id: "m1",
  command: "SEND_EMAIL",
  from: "a",
  to: "b",
  state: "copying",
  startedAtMs: 1,
  ...overrides,
});

describe("validateShardMap", () => {
  it("accepts a valid map, migrations and all", () => {
    expect(validateShardMap(map())).toEqual([]);
    expect(
      validateShardMap(
        map({
          migrations: [
            migration(),
            migration({ id: "m2", command: "RESIZE", tenant: "acme", from: "c", to: "a" }),
            // Finished migrations of the same queue do not count against the running one.
            migration({ id: "m3", state: "completed", finishedAtMs: 9 }),
            migration({ id: "m4", state: "aborted" }),
          ],
        }),
      ),
    ).toEqual([]);
    const endpoints = ["localhost:1", "10.0.0.7:65535", "[::1]:7300", "shard-a.codeq.svc:7301"];
    for (const endpoint of endpoints) {
      expect(validateShardMap(map({ shards: { a: { endpoint, state: "active" } }, commands: {}, tenants: {} }))).toEqual([]);
    } // prettier-ignore
  });

  it.each<[string, Record<string, unknown>, string]>([
    ["a bad shard id", { shards: { ...draft().shards, Shard_B: { endpoint: "h:1", state: "active" } } }, `shards.Shard_B: shard id "Shard_B" must match ^[a-z0-9][a-z0-9-]{0,62}$`],
    ["an endpoint without a port", { shards: { ...draft().shards, d: { endpoint: "host", state: "active" } } }, `shards.d.endpoint: endpoint "host" must be host:port (port 1..65535)`],
    ["a port out of range", { shards: { ...draft().shards, d: { endpoint: "host:70000", state: "active" } } }, `shards.d.endpoint: endpoint "host:70000" must be host:port`],
    ["an unknown shard state", { shards: { ...draft().shards, d: { endpoint: "h:1", state: "gone" } } }, `shards.d.state: Invalid option: expected one of "active"|"draining"`],
    ["a missing default shard", { defaultShard: undefined }, "defaultShard: is required"],
    ["a default shard not in shards", { defaultShard: "x" }, `defaultShard: shard "x" is not in shards`],
    ["a bad command name", { commands: { "SEND:EMAIL": "a" } }, `commands["SEND:EMAIL"]: command "SEND:EMAIL" must match ^[A-Za-z0-9_.-]{1,128}$`],
    ["a command mapped to an unknown shard", { commands: { SEND_EMAIL: "x" } }, `commands.SEND_EMAIL: shard "x" is not in shards`],
    ["an override key without a tenant", { tenants: { SEND_EMAIL: "a" } }, `tenants.SEND_EMAIL: tenant override key "SEND_EMAIL" must be <command>/<tenant>`],
    ["an override with a bad tenant name", { tenants: { "SEND_EMAIL/a b": "a" } }, `tenants["SEND_EMAIL/a b"]: tenant override key "SEND_EMAIL/a b" must be <command>/<tenant>`],
    ["an override naming an unknown shard", { tenants: { "SEND_EMAIL/acme": "x" } }, `tenants["SEND_EMAIL/acme"]: shard "x" is not in shards`],
    ["a migration from an unknown shard", { migrations: [migration({ from: "x" })] }, `migrations[0].from: shard "x" is not in shards`],
    ["a migration to an unknown shard", { migrations: [migration({ from: "b", to: "x", state: "aborting" })] }, `migrations[0].to: shard "x" is not in shards`],
    ["a migration onto its own source", { migrations: [migration({ from: "b" })] }, `migrations[0]: from and to are the same shard "b"`],
    ["an unknown migration state", { migrations: [migration({ state: "paused" as never })] }, "migrations[0].state: Invalid option"],
    ["a migration with a bad tenant", { migrations: [migration({ tenant: "" })] }, `migrations[0].tenant: tenant "" must match`],
    ["a migration id used twice", { migrations: [migration(), migration({ command: "OTHER", state: "completed" })] }, `migrations[1].id: "m1" is used twice`],
    ["two running migrations of one command", { migrations: [migration(), migration({ id: "m2", state: "draining", from: "c" })] }, `migrations[1]: queue "SEND_EMAIL" already has an unfinished migration (migrations[0])`],
    ["two running migrations of one tenant's queue", { migrations: [migration({ tenant: "acme", to: "c" }), migration({ id: "m2", tenant: "acme", state: "aborting", from: "c" })] }, `migrations[1]: queue "SEND_EMAIL/acme" already has an unfinished migration (migrations[0])`],
    ["a running command move and a running tenant move of it", { migrations: [migration(), migration({ id: "m2", tenant: "acme", from: "b", to: "c" })] }, `migrations[1]: command "SEND_EMAIL" has unfinished migrations of the whole command (migrations[0]) and of one tenant (migrations[1])`],
    ["a command moving onto a shard it is not routed to", { commands: { SEND_EMAIL: "c" }, migrations: [migration()] }, `migrations[0]: queue "SEND_EMAIL" is routed to shard "c", but this copying migration moves it onto "b"; route it to "b" or end the migration`],
    ["a default-routed command moving elsewhere", { migrations: [migration({ command: "RESIZE", from: "b", to: "c" })] }, `migrations[0]: queue "RESIZE" is routed to shard "a", but this copying migration moves it onto "c"`],
    ["a tenant's queue moving onto a shard it is not routed to", { migrations: [migration({ tenant: "acme", from: "c", to: "a", state: "draining" })] }, `migrations[0]: queue "SEND_EMAIL/acme" is routed to shard "c", but this draining migration moves it onto "a"`],
    ["an abort routed to the target", { migrations: [migration({ state: "aborting" })] }, `migrations[0]: queue "SEND_EMAIL" is routed to shard "b", but this aborting migration moves it onto "a"`],
    ["a negative version", { version: -1 }, "version: Too small"],
    ["a fractional timestamp", { updatedAtMs: 1.5 }, "updatedAtMs: Invalid input: expected int"],
  ])("reports %s", (_, overrides, problem) => {
    const problems = validateShardMap(map(overrides));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(problem);
  }); // prettier-ignore

  it("refuses to write a former default that is not a shard, or is the default; a reader ignores it", () => {
    const unknown = map({ formerDefault: "x" });
    const itself = map({ formerDefault: "a" });
    expect(validateShardMap(unknown, { write: true })).toEqual([
      `formerDefault: shard "x" is not in shards`,
    ]);
    expect(validateShardMap(itself, { write: true })).toEqual([
      "formerDefault: it is the default shard itself",
    ]);
    // a writer that predates the field may leave either: the map still loads
    expect(validateShardMap(unknown)).toEqual([]);
    expect(validateShardMap(itself)).toEqual([]);
    expect(validateShardMap(map({ formerDefault: "b" }), { write: true })).toEqual([]);
  });

  it("reports every problem at once, not just the first", () => {
    const problems = validateShardMap({
      version: 1,
      updatedAtMs: 0,
      shards: { "Bad!": { endpoint: "nope", state: "active" }, b: { endpoint: "h:1", state: "x" } },
      defaultShard: "missing",
      commands: { SEND_EMAIL: "zz", "bad name": "b" },
      tenants: { "SEND_EMAIL/acme": "yy" },
      migrations: [migration({ from: "q", to: "q" })],
    });
    expect(problems).toEqual([
      `shards["Bad!"]: shard id "Bad!" must match ^[a-z0-9][a-z0-9-]{0,62}$`,
      `shards.b.state: Invalid option: expected one of "active"|"draining"`,
      `commands["bad name"]: command "bad name" must match ^[A-Za-z0-9_.-]{1,128}$`,
      `defaultShard: shard "missing" is not in shards`,
      `commands.SEND_EMAIL: shard "zz" is not in shards`,
      `tenants["SEND_EMAIL/acme"]: shard "yy" is not in shards`,
      `migrations[0].from: shard "q" is not in shards`,
      `migrations[0].to: shard "q" is not in shards`,
      `migrations[0]: from and to are the same shard "q"`,
      `migrations[0]: queue "SEND_EMAIL" is routed to shard "zz", but this copying migration moves it onto "q"; route it to "q" or end the migration`,
    ]);
  });

  it("reports what is not a map at all", () => {
    expect(validateShardMap("hello")).toEqual(["Invalid input: expected object, received string"]);
    expect(validateShardMap({})).toEqual(
      expect.arrayContaining([
        "version: is required",
        "shards: is required",
        "migrations: is required",
      ]),
    );
  });

  it("keeps unknown fields of a stored map (newer writers) unless strict", () => {
    const newer = map({ futureField: 1, shards: { a: { endpoint: "h:1", state: "active", zone: "x" } }, commands: {}, tenants: {} });
    expect(validateShardMap(newer)).toEqual([]);
    expect(validateShardMap(newer, { strict: true })).toEqual([
      "shards.a: unknown field(s) zone",
      "unknown field(s) futureField",
    ]);
  }); // prettier-ignore
});

describe("two shards on one endpoint", () => {
  const twice = map({
    shards: { ...draft().shards, d: { endpoint: "127.0.0.1:7402", state: "active" } },
  });
  it("is refused in a map about to be written, or a file", () => {
    expect(validateShardMap(twice, { write: true })).toEqual([
      `shards.d.endpoint: "127.0.0.1:7402" is shard "b"'s too; each shard has a worker of its own`,
    ]);
  });
  it("is one endpoint however its host and port are written: case, the loopback's names, zeros", () => {
    const two = (a: string, b: string) =>
      validateShardMap(
        map({
          shards: {
            ...draft().shards,
            d: { endpoint: a, state: "active" },
            e: { endpoint: b, state: "active" },
          },
        }),
        { write: true },
      );
    expect(two("localhost:9001", "127.0.0.1:9001")).toEqual([
      `shards.e.endpoint: "127.0.0.1:9001" is shard "d"'s too ("localhost:9001"); each shard has a worker of its own`,
    ]);
    expect(two("[::1]:9001", "LOCALHOST:9001")).toHaveLength(1);
    expect(two("[0:0:0:0:0:0:0:1]:9001", "127.0.0.1:9001")).toHaveLength(1);
    expect(two("[2001:db8:0::1]:9001", "[2001:DB8::1]:9001")).toHaveLength(1);
    expect(two("Shard-D.example:9001", "shard-d.example:09001")).toHaveLength(1);
    expect(two("shard-d:9001", "shard-e:9001")).toEqual([]);
    expect(two("localhost:9001", "localhost:9002")).toEqual([]);
  });
  it("is let off in a stored map (written before the rule), so it can still be read and mended", () => {
    expect(validateShardMap(twice)).toEqual([]);
  });
  it("is let off in a write over a map that already had the pair; a pair the write makes is not", () => {
    const previous = twice;
    expect(validateShardMap(twice, { write: true, previous })).toEqual([]);
    // the same endpoint written another way is still the pair the map had
    const respelled = map({
      shards: { ...draft().shards, d: { endpoint: "LOCALHOST:7402", state: "active" } },
    });
    expect(validateShardMap(respelled, { write: true, previous })).toEqual([]);
    const third = map({
      shards: { ...twice.shards, e: { endpoint: "127.0.0.1:7402", state: "active" } },
    });
    expect(validateShardMap(third, { write: true, previous })).toEqual([
      `shards.e.endpoint: "127.0.0.1:7402" is shard "b"'s too; each shard has a worker of its own`,
    ]);
    // a pair that shared nothing before
    const moved = map({
      shards: { ...draft().shards, d: { endpoint: "127.0.0.1:7401", state: "active" } },
    });
    expect(validateShardMap(moved, { write: true, previous })).toHaveLength(1);
    // the pair the map had, moved together onto another endpoint: a pair the write makes
    const movedTogether = map({
      shards: {
        ...twice.shards,
        b: { endpoint: "127.0.0.1:7409", state: "active" },
        d: { endpoint: "localhost:7409", state: "active" },
      },
    });
    expect(validateShardMap(movedTogether, { write: true, previous })).toEqual([
      `shards.d.endpoint: "localhost:7409" is shard "b"'s too ("127.0.0.1:7409"); each shard has a worker of its own`,
    ]);
  });
});

describe("prepareWrite", () => {
  it("lets off a pair the previous map had only when that map is the version replaced", () => {
    const {
      version: _v,
      updatedAtMs: _u,
      ...next
    } = map({
      shards: { ...draft().shards, d: { endpoint: "127.0.0.1:7402", state: "active" } },
    });
    const previous = map({ ...next, version: 3 });
    expect(prepareWrite(3, next, change(), 1, previous).map.version).toBe(4);
    // a map of another version proves nothing about the one the write replaces
    expect(() => prepareWrite(4, next, change(), 1, previous)).toThrow(/is shard "b"'s too/);
    expect(() => prepareWrite(3, next, change(), 1)).toThrow(/is shard "b"'s too/);
  });
});

describe("assertShardMap", () => {
  it("returns a valid map and throws a ShardMapError listing every problem otherwise", () => {
    const valid = map();
    expect(assertShardMap(valid)).toBe(valid);
    const err = (() => {
      try {
        assertShardMap(map({ defaultShard: "x", commands: { A: "y" } }), "test map");
      } catch (e) {
        return e;
      }
    })() as ShardMapError;
    expect(err).toBeInstanceOf(ShardMapError);
    expect(err.name).toBe("ShardMapError");
    expect(err.problems).toHaveLength(2);
    expect(err.message).toBe(
      'invalid test map:\n  - defaultShard: shard "x" is not in shards\n  - commands.A: shard "y" is not in shards',
    );
  });
});
