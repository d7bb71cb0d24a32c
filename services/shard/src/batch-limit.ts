import { invalid } from "./status";

/** Refuses a batch of `n` items (named `what`) unless it holds 1..`max`. */
export function checkBatch(what: string, n: number, max: number): void {
  if (n < 1) throw invalid(`${what}: at least one item is required`);
  if (n > max) throw invalid(`${what}: at most ${max} items per call, got ${n}`);
}
