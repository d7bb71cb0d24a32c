import type { QueueCounts } from "@codeq/proto";

/** Counts of no task, `ready_by_priority` holding its ten zeros. */
export const emptyQueueCounts = (): QueueCounts => ({
  readyByPriority: new Array<number>(10).fill(0),
  ready: 0,
  scheduled: 0,
  leased: 0,
  dead: 0,
  completed: 0,
});

/** Adds `c` into `total`. */
export function addCounts(total: QueueCounts, c: QueueCounts | undefined): void {
  if (!c) return;
  total.ready += c.ready;
  total.scheduled += c.scheduled;
  total.leased += c.leased;
  total.dead += c.dead;
  total.completed += c.completed;
  c.readyByPriority.forEach((n, p) => {
    total.readyByPriority[p] = (total.readyByPriority[p] ?? 0) + n;
  });
}

/** Tasks a worker could still receive: ready, scheduled, leased and dead (not completed). */
export const liveTasks = (c: QueueCounts): number => c.ready + c.scheduled + c.leased + c.dead;
