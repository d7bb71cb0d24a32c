import { toJson } from "../json";
import { JsonResults } from "./enqueue";

/** What JsonResults writes, as one text (each `out` a line, as the CLI writes it). */
function written(items: object[], empty = true): string {
  const lines: string[] = [];
  const json = new JsonResults({
    out: (line) => lines.push(line),
    err: () => undefined,
    errRaw: () => undefined,
    errIsTTY: false,
  });
  for (const item of items) json.add(item);
  json.end(empty);
  return lines.map((l) => `${l}\n`).join("");
}

describe("enqueue --count --json, written as the answers come", () => {
  test("is the text toJson writes of the whole list", () => {
    const items = [
      {
        taskId: "a",
        status: { code: 0, message: "" },
        duplicate: false,
        state: "TASK_STATE_READY",
      },
      { taskId: "", status: { code: 8, message: "slow\ndown" }, duplicate: false, state: "X" },
      { taskId: "c", status: { code: 0, message: "" }, duplicate: true, state: "TASK_STATE_READY" },
    ];
    for (const n of [1, 2, 3]) {
      const text = written(items.slice(0, n));
      expect(text).toBe(`${toJson({ results: items.slice(0, n) })}\n`);
      expect(JSON.parse(text)).toEqual({ results: items.slice(0, n) });
    }
  });

  test("an empty list is written only when asked", () => {
    expect(written([])).toBe(`${toJson({ results: [] })}\n`);
    expect(written([], false)).toBe("");
  });
});
