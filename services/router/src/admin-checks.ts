import { ServerError, Status } from "nice-grpc";
import { NAME_PATTERN } from "@codeq/shardmap";

/** What the router's admin calls refuse: the statuses they refuse with, and their checks of names and ids. */

export const invalid = (message: string) => new ServerError(Status.INVALID_ARGUMENT, message);
export const precondition = (message: string) =>
  new ServerError(Status.FAILED_PRECONDITION, message);

/** Migration ids as the router issues them (checked before any lookup or message uses one). */
export const MIGRATION_ID = /^[A-Za-z0-9_.-]{1,128}$/;

export function checkId(field: string, value: string, pattern: RegExp): void {
  if (!value) throw invalid(`${field} is required`);
  if (!pattern.test(value)) throw invalid(`${field} must match ${pattern.source}`);
}

export function checkName(field: string, value: string): void {
  if (!NAME_PATTERN.test(value)) throw invalid(`${field} must match ${NAME_PATTERN.source}`);
}
