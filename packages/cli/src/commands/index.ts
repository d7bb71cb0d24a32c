import type { Command } from "../command";
import { abortCommand } from "./abort";
import { assignCommand } from "./assign";
import { dlqListCommand, dlqPurgeCommand, dlqRedriveCommand } from "./dlq";
import { enqueueCommand } from "./enqueue";
import { mapCommand } from "./map";
import { migrationsCommand } from "./migrations";
import { shardAddCommand, shardRemoveCommand } from "./shard-admin";
import { shardsCommand } from "./shards";
import { statsCommand } from "./stats";
import { tailCommand } from "./tail";

/** Every command, in the order `codeq --help` lists them. */
export const COMMANDS: readonly Command[] = [
  shardsCommand,
  mapCommand,
  assignCommand,
  migrationsCommand,
  abortCommand,
  shardAddCommand,
  shardRemoveCommand,
  statsCommand,
  dlqListCommand,
  dlqRedriveCommand,
  dlqPurgeCommand,
  enqueueCommand,
  tailCommand,
];
