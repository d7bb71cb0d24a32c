/** A RedriveDead's rate when the request sets none, tasks a second. */
export const DEFAULT_REDRIVE_RATE = 1000;

/** The most dead tasks one RedriveDead call moves (max_tasks), and ids it names. */
export const MAX_REDRIVE_TASKS = 1000;
