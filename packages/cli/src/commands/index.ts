import type { Command } from "../command";
import { abortCommand } from "./abort";
import { assignCommand } from "./assign";
import { auditCommand } from "./audit";
import { dlqListCommand, dlqPurgeCommand, dlqRedriveCommand } from "./dlq";
import { enqueueCommand } from "./enqueue";
import { mapCommand } from "./map";
import { migrationsCommand } from "./migrations";
import {
  shardAddCommand,
  shardDefaultCommand,
  shardRemoveCommand,
  shardStateCommand,
} from "./shard-admin";
import { shardsCommand } from "./shards";
import { statsCommand } from "./stats";
import { tailCommand } from "./tail";
import { verifyCommand } from "./verify";

/** Every command, in the order `codeq --help` lists them. */
export const COMMANDS: readonly Command[] = [
  shardsCommand,
  mapCommand,
  assignCommand,
  migrationsCommand,
  verifyCommand,
  abortCommand,
  shardAddCommand,
  shardRemoveCommand,
  shardDefaultCommand,
  shardStateCommand,
  auditCommand,
  statsCommand,
  dlqListCommand,
  dlqRedriveCommand,
  dlqPurgeCommand,
  enqueueCommand,
  tailCommand,
];
