import { LeaseResponse } from "@codeq/proto";
import { Raw } from "./wire-bytes";
import { mergeLeases, type Leased } from "./lease-fan-out";
import type { ShardConn } from "./shard-pool";

/** One shard's answer: `sizes` tasks with payloads of those many bytes. */
function answer(shard: string, sizes: number[]): Leased {
  const tasks = sizes.map((size, i) => ({
    leaseToken: `${shard}-${i}`,
    task: { id: `${shard}${i}`, payload: Buffer.alloc(size) },
  }));
  const bytes = LeaseResponse.encode(LeaseResponse.fromPartial({ tasks })).finish();
  return { conn: { id: shard } as ShardConn, raw: new Raw(bytes, LeaseResponse) };
}

describe("mergeLeases", () => {
  it("keeps every shard's first task first, then what fits, and gives the rest back to each shard", () => {
    const back: string[] = [];
    const merged = mergeLeases(
      [answer("a", [1000, 1000]), answer("b", [1000, 1000]), answer("c", [1000])],
      100,
      3_200,
      (conn, tokens) => back.push(`${conn.id}:${tokens.join(",")}`),
    );
    expect(merged.map((t) => t.leaseToken)).toEqual(["a-0", "b-0", "c-0"]);
    expect(back).toEqual(["a:a-1", "b:b-1"]);
  });

  it("keeps everything when it all fits", () => {
    const back: string[] = [];
    const merged = mergeLeases([answer("a", [10]), answer("b", [10])], 2, 10_000, (c, t) =>
      back.push(...t),
    );
    expect(merged).toHaveLength(2);
    expect(back).toEqual([]);
  });

  it("keeps a first task larger than the bound", () => {
    const back: string[] = [];
    const merged = mergeLeases([answer("a", [5000]), answer("b", [10])], 100, 1000, (c, t) =>
      back.push(...t),
    );
    expect(merged.map((t) => t.leaseToken)).toEqual(["a-0"]);
    expect(back).toEqual(["b-0"]);
  });

  it("keeps at most max_tasks, every shard's first task first, and gives the rest back", () => {
    const back: string[] = [];
    const merged = mergeLeases(
      [answer("a", [10, 10]), answer("b", [10]), answer("c", [10])],
      2,
      10_000,
      (conn, tokens) => back.push(`${conn.id}:${tokens.join(",")}`),
    );
    expect(merged.map((t) => t.leaseToken)).toEqual(["a-0", "b-0"]);
    expect(back.sort()).toEqual(["a:a-1", "c:c-0"]);
  });
});
