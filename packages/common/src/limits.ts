/** A RedriveDead's rate when the request sets none, tasks a second. */
export const DEFAULT_REDRIVE_RATE = 1000;

/** The most dead tasks one RedriveDead call moves (max_tasks), and ids it names. */
export const MAX_REDRIVE_TASKS = 1000;

/** The fastest rate a RedriveDead may ask for, tasks a second. */
export const MAX_REDRIVE_RATE = 100_000;

/** The most dead tasks one PurgeDead call deletes (max_tasks), and ids it names. */
export const MAX_PURGE_TASKS = 10_000;
