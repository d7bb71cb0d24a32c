/**
 * The names codeQ accepts for shards, commands and tenants. They become parts of store
 * keys, lease tokens and shard map entries, so they are restricted to characters that
 * cannot break any of those layouts. The engine, the shard map, the services and the
 * CLI all check against these, so a name one accepts every other accepts too.
 */

/** A command or tenant name, unanchored (to build larger patterns from). */
export const NAME = "[A-Za-z0-9_.-]{1,128}";

/** A shard id, unanchored: lower-case letters, digits and dashes, starting with a letter or digit. */
export const SHARD_ID = "[a-z0-9][a-z0-9-]{0,62}";

/** A command or tenant name. */
export const NAME_PATTERN = new RegExp(`^${NAME}$`);

/** A shard id. */
export const SHARD_ID_PATTERN = new RegExp(`^${SHARD_ID}$`);
