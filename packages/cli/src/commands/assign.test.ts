import { QueueCounts } from "@codeq/proto";
import { planLines } from "./assign";

describe("assign's plan table", () => {
  const counts = QueueCounts.fromPartial({ ready: 5, scheduled: 1, leased: 2 });

  it("shows what moves, per state", () => {
    const lines = planLines(
      {
        mapVersion: 3,
        migrations: [],
        plan: [{ fromShard: "a", toShard: "b", tenants: ["acme"], counts, notCounted: "" }],
      },
      "",
    );
    expect(lines.join("\n")).toMatch(/a → b\s+acme\s+5\s+1\s+2\s+0/);
  });

  it("says a source it could not count was not counted, rather than show an empty queue", () => {
    const lines = planLines(
      {
        mapVersion: 3,
        migrations: [],
        plan: [
          {
            fromShard: "a",
            toShard: "b",
            tenants: [],
            counts: QueueCounts.fromPartial({}),
            notCounted: "cannot count what shard a holds: connection refused",
          },
        ],
      },
      "",
    );
    const text = lines.join("\n");
    expect(text).toMatch(/a → b\s+\(not counted\)\s+-\s+-\s+-\s+-/);
    expect(text).toContain("not counted: cannot count what shard a holds: connection refused");
    expect(text).not.toMatch(/\b0\b/);
  });
});
