import { Status } from "nice-grpc";

/**
 * Statuses about the request itself, not the service that answered it: any shard would
 * say the same, so the caller gets them, and a stream whose message drew one ends.
 */
export const CALLER_CODES: ReadonlySet<number> = new Set([
  Status.INVALID_ARGUMENT,
  Status.PERMISSION_DENIED,
  Status.UNAUTHENTICATED,
  Status.RESOURCE_EXHAUSTED,
]);
