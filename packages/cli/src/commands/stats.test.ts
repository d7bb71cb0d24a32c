import { QueueCounts, type QueueStatsResponse } from "@codeq/proto";
import type { CommandContext } from "../command";
import { ExitCode } from "../errors";
import { statsCommand } from "./stats";

/** `codeq stats X` against a router that answers `answer`; what it printed, where. */
async function stats(answer: QueueStatsResponse, json = false) {
  const out: string[] = [];
  const err: string[] = [];
  const ctx = {
    global: { json },
    values: {},
    positionals: ["X"],
    clients: { queue: { queueStats: async () => answer }, call: () => ({}) },
    io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) },
    interrupted: new AbortController().signal,
  } as unknown as CommandContext;
  const code = await statsCommand.run(ctx);
  return { code, out, err };
}

const counts = QueueCounts.fromPartial({ ready: 2, leased: 1, completed: 5 });

describe("codeq stats", () => {
  it("prints the table alone on stdout, and exits 0, when every shard answered", async () => {
    const r = await stats({
      shards: [{ shard: "a", counts }],
      total: counts,
      unavailableShards: [],
    });
    expect(r.code).toBe(ExitCode.OK);
    expect(r.out[0]).toMatch(/^COMMAND\s+SHARD\s+READY/);
    expect(r.err).toEqual([]);
  });

  it("names a shard that did not answer on stderr and exits 5: the totals are partial", async () => {
    const r = await stats({
      shards: [{ shard: "a", counts }],
      total: counts,
      unavailableShards: ["b"],
    });
    expect(r.code).toBe(ExitCode.INCONSISTENT);
    expect(r.out.join("\n")).not.toMatch(/did not answer/);
    expect(r.err).toEqual(["X: shard b did not answer; its counts are missing"]);
    // and with --json: the answer says which, the exit code that it is partial
    const j = await stats({ shards: [], total: counts, unavailableShards: ["b"] }, true);
    expect(j.code).toBe(ExitCode.INCONSISTENT);
    expect(JSON.parse(j.out.join("\n"))[0].unavailableShards).toEqual(["b"]);
  });
});
