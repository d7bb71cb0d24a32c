/**
 * How long a router lets one shard's RedriveDead run, ms. The shard worker paces a
 * redrive to its rate, so a call lasts about max_tasks / rate_per_second; a client
 * that sizes its calls (the CLI) keeps within this.
 */
export const REDRIVE_SHARD_TIMEOUT_MS = 600_000;
