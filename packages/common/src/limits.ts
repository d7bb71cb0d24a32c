/** A RedriveDead's rate when the request sets none, tasks a second. */
export const DEFAULT_REDRIVE_RATE = 1000;
