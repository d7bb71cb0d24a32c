import { randomBytes } from "node:crypto";

/** A new migration's id: its start time, then a random part. */
export const newMigrationId = (): string =>
  `mig-${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
