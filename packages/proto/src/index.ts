import * as fs from "node:fs";
import * as path from "node:path";

export * from "./gen/codeq/v1/task";
export * from "./gen/codeq/v1/queue";
export * from "./gen/codeq/v1/admin";
/** The router → shard hop and the migration mover. Not a public API. */
export * as internal from "./gen/codeq/internal/v1/shard";
export { sentAsGiven, type SentAsGiven } from "./sent-as-given";

/** Path of the FileDescriptorSet built from proto/ (for server reflection and other languages). */
export const descriptorSetPath = path.join(__dirname, "..", "descriptor", "codeq.binpb");

/** The FileDescriptorSet bytes, read once. */
let descriptorSet: Buffer | undefined;
export function loadDescriptorSet(): Buffer {
  descriptorSet ??= fs.readFileSync(descriptorSetPath);
  return descriptorSet;
}
