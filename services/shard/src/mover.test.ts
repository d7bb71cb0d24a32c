import { firstBatch, nextBatch } from "./batch-size";
import { placementOf } from "./target-placement";

describe("mover batch sizes", () => {
  test("a pass starts at 50 tasks (or the largest batch, when smaller)", () => {
    expect(firstBatch(500)).toBe(50);
    expect(firstBatch(10)).toBe(10);
  });

  test("each batch that found the target not busy doubles the next, up to the largest", () => {
    const sizes = [firstBatch(500)];
    while (sizes.length < 6) sizes.push(nextBatch(sizes.at(-1)!, false, 500));
    expect(sizes).toEqual([50, 100, 200, 400, 500, 500]);
  });

  test("a busy target halves it, never below the first size", () => {
    expect(nextBatch(500, true, 500)).toBe(250);
    expect(nextBatch(75, true, 500)).toBe(50);
    expect(nextBatch(50, true, 500)).toBe(50);
    expect(nextBatch(10, true, 10)).toBe(10);
  });
});

describe("mover placement", () => {
  test("a copying move's batches go to the head of the target's lists; draining and aborting ones to the tail", () => {
    expect(placementOf({ state: "copying" })).toBe("head");
    expect(placementOf({ state: "draining" })).toBe("tail");
    expect(placementOf({ state: "aborting" })).toBe("tail");
  });
});
