import { resolveQueue, type ResolvedBy } from "./resolve";
import type { Migration, RoutingTable, ShardInfo } from "./shard-map";

const active: ShardInfo = { endpoint: "h:1", state: "active" };
const draining: ShardInfo = { endpoint: "h:1", state: "draining" };

/** Shards a..e; e is draining. Default a; SEND_EMAIL on b; acme's SEND_EMAIL on c. */
function table(
  extra: { commands?: Record<string, string>; tenants?: Record<string, string> } = {},
  migrations: Migration[] = [],
): RoutingTable {
  return {
    shards: { a: active, b: active, c: active, d: active, e: draining },
    defaultShard: "a",
    commands: { SEND_EMAIL: "b", ...extra.commands },
    tenants: { "SEND_EMAIL/acme": "c", ...extra.tenants },
    migrations,
  };
}

let ids = 0;
const move = (
  command: string,
  from: string,
  to: string,
  state: Migration["state"] = "copying",
  tenant?: string,
): Migration => ({
  id: `m${++ids}`,
  command,
  from,
  to,
  state,
  startedAtMs: 1,
  ...(tenant === undefined ? {} : { tenant }),
});

type Row = [
  why: string,
  map: RoutingTable,
  command: string,
  tenant: string,
  current: string,
  by: ResolvedBy,
  queueShards: string[],
];

// prettier-ignore
const rows: Row[] = [
  // Precedence: tenant override → command mapping → default shard.
  ["no mapping: the default shard", table(), "RESIZE", "acme", "a", "default", ["a"]],
  ["a command mapping", table(), "SEND_EMAIL", "globex", "b", "command", ["b"]],
  ["a tenant override beats the command mapping", table(), "SEND_EMAIL", "acme", "c", "tenant", ["c"]],
  ["a tenant override without a command mapping", table({ tenants: { "RESIZE/acme": "d" } }), "RESIZE", "acme", "d", "tenant", ["d"]],
  ["another tenant's override does not apply", table({ tenants: { "RESIZE/acme": "d" } }), "RESIZE", "globex", "a", "default", ["a"]],
  ["an override of the same tenant on another command does not apply", table(), "RESIZE", "acme", "a", "default", ["a"]],
  ["names are case-sensitive", table(), "send_email", "acme", "a", "default", ["a"]],
  ["a command mapping to the default shard itself", table({ commands: { RESIZE: "a" } }), "RESIZE", "x", "a", "command", ["a"]],
  ["a mapping to a draining shard still routes there", table({ commands: { RESIZE: "e" } }), "RESIZE", "x", "e", "command", ["e"]],
  // A change of the default shard being finished: the former default is read first for
  // the queues that follow the default, and only for them.
  ["the former default, for a queue that follows the default", { ...table(), formerDefault: "d" }, "RESIZE", "x", "a", "default", ["d", "a"]],
  ["not for a mapped command", { ...table(), formerDefault: "d" }, "SEND_EMAIL", "globex", "b", "command", ["b"]],
  ["not for a tenant override", { ...table(), formerDefault: "d" }, "SEND_EMAIL", "acme", "c", "tenant", ["c"]],
  ["the former default first, before a move's sides", { ...table({}, [move("RESIZE", "b", "a")]), formerDefault: "d" }, "RESIZE", "x", "a", "default", ["d", "b", "a"]],
  ["a former default that is the default is no former one", { ...table(), formerDefault: "a" }, "RESIZE", "x", "a", "default", ["a"]],
  ["nor one that is not a shard", { ...table(), formerDefault: "x" }, "RESIZE", "x", "a", "default", ["a"]],

  // A whole command moving (tenant unset) applies to tenants without an override.
  ["command move, copying: source first", table({ commands: { RESIZE: "d" } }, [move("RESIZE", "a", "d")]), "RESIZE", "globex", "d", "command", ["a", "d"]],
  ["command move, draining: source first", table({ commands: { RESIZE: "d" } }, [move("RESIZE", "a", "d", "draining")]), "RESIZE", "globex", "d", "command", ["a", "d"]],
  ["command move skips a tenant with its own override", table({ commands: { SEND_EMAIL: "d" } }, [move("SEND_EMAIL", "b", "d")]), "SEND_EMAIL", "acme", "c", "tenant", ["c"]],
  ["command move, completed: the source is done", table({ commands: { RESIZE: "d" } }, [move("RESIZE", "a", "d", "completed")]), "RESIZE", "x", "d", "command", ["d"]],
  ["command move, aborted: back on the source only", table({ commands: { RESIZE: "a" } }, [move("RESIZE", "a", "d", "aborted")]), "RESIZE", "x", "a", "command", ["a"]],
  ["command move, aborting: the target drains back first", table({ commands: { RESIZE: "a" } }, [move("RESIZE", "a", "d", "aborting")]), "RESIZE", "x", "a", "command", ["d", "a"]],
  ["command move off the default shard (no mapping before)", table({ commands: { RESIZE: "d" } }, [move("RESIZE", "a", "d")]), "RESIZE", "acme", "d", "command", ["a", "d"]],
  ["a move of another command does not apply", table({ commands: { RESIZE: "d" } }, [move("RESIZE", "a", "d")]), "SEND_EMAIL", "globex", "b", "command", ["b"]],
  ["a move whose source is the current shard lists it once", table({ commands: { RESIZE: "a" } }, [move("RESIZE", "a", "d")]), "RESIZE", "x", "a", "command", ["a", "d"]],
  ["a running move keeps its target even if the mapping says otherwise", table({ commands: { RESIZE: "b" } }, [move("RESIZE", "a", "d")]), "RESIZE", "x", "b", "command", ["a", "d", "b"]],

  // One tenant's queue moving applies to that queue only.
  ["tenant move, copying: source first", table({ tenants: { "SEND_EMAIL/acme": "d" } }, [move("SEND_EMAIL", "c", "d", "copying", "acme")]), "SEND_EMAIL", "acme", "d", "tenant", ["c", "d"]],
  ["tenant move, draining", table({ tenants: { "SEND_EMAIL/acme": "d" } }, [move("SEND_EMAIL", "c", "d", "draining", "acme")]), "SEND_EMAIL", "acme", "d", "tenant", ["c", "d"]],
  ["tenant move, aborting: target drains back first", table({}, [move("SEND_EMAIL", "c", "d", "aborting", "acme")]), "SEND_EMAIL", "acme", "c", "tenant", ["d", "c"]],
  ["tenant move, completed", table({ tenants: { "SEND_EMAIL/acme": "d" } }, [move("SEND_EMAIL", "c", "d", "completed", "acme")]), "SEND_EMAIL", "acme", "d", "tenant", ["d"]],
  ["tenant move does not apply to other tenants", table({ tenants: { "SEND_EMAIL/acme": "d" } }, [move("SEND_EMAIL", "c", "d", "copying", "acme")]), "SEND_EMAIL", "globex", "b", "command", ["b"]],
  ["tenant move does not apply to the tenant on another command", table({}, [move("SEND_EMAIL", "c", "d", "copying", "acme")]), "RESIZE", "acme", "a", "default", ["a"]],
  ["tenant move back to the command's shard (override removed)", { ...table({}, [move("SEND_EMAIL", "c", "b", "copying", "acme")]), tenants: {} }, "SEND_EMAIL", "acme", "b", "command", ["c", "b"]],
  ["tenant move back to the default (no mapping left)", { ...table({}, [move("RESIZE", "d", "a", "copying", "acme")]) }, "RESIZE", "acme", "a", "default", ["d", "a"]],

  // Order among shards being drained: shards in state draining first. (Two moves of
  // one command at once is a map the validator refuses; resolution stays defined.)
  ["two applicable moves: the draining-state shard first", { ...table({}, [move("SEND_EMAIL", "d", "b"), move("SEND_EMAIL", "e", "b", "copying", "zeta")]), tenants: {} }, "SEND_EMAIL", "zeta", "b", "command", ["e", "d", "b"]],
];

describe("resolveQueue", () => {
  it.each(rows)("%s", (_, map, command, tenant, current, by, queueShards) => {
    const resolved = resolveQueue(map, command, tenant);
    expect(resolved.currentShard).toBe(current);
    expect(resolved.by).toBe(by);
    expect(resolved.queueShards).toEqual(queueShards);
    // Always: the current shard is among the queue's shards, and no shard twice.
    expect(resolved.queueShards).toContain(current);
    expect(new Set(resolved.queueShards).size).toBe(resolved.queueShards.length);
  });

  it("is a pure function: the same answer every time, the map untouched", () => {
    const map = table({}, [move("SEND_EMAIL", "b", "d")]);
    const before = JSON.stringify(map);
    const first = resolveQueue(map, "SEND_EMAIL", "globex");
    first.queueShards.push("mutated");
    expect(resolveQueue(map, "SEND_EMAIL", "globex").queueShards).toEqual(["b", "d"]);
    expect(JSON.stringify(map)).toBe(before);
  });
});
