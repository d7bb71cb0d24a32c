/** The `codeq` CLI, for embedding and tests; the binary is dist/main.js. */
export { run, type RunEnvironment } from "./run";
export { COMMANDS } from "./commands";
export type { Command, CommandContext, Output } from "./command";
export { ExitCode, UsageError } from "./errors";
export { formatTable, type Cell } from "./table";
