/**
 * A pass's first batch holds at most this many tasks, and each batch after one that
 * found the target not busy twice as many, up to the mover's `batch`; a busy target
 * halves it. The target's load is measured over the last quarter second, so it shows
 * a batch's cost only after the fact: a move starts small rather than with its
 * largest batches.
 */
const FIRST_BATCH = 50;

/** A pass's first batch size, with batches of at most `max` (see FIRST_BATCH). */
export function firstBatch(max: number): number {
  return Math.min(FIRST_BATCH, max);
}

/** The batch after one of `size` that found the target `busy` (see FIRST_BATCH). */
export function nextBatch(size: number, busy: boolean, max: number): number {
  return busy ? Math.max(Math.ceil(size / 2), firstBatch(max)) : Math.min(size * 2, max);
}
