import { ServerError, type ServerMiddleware } from "nice-grpc";

/** Longest status message a service sends, characters. */
export const MAX_STATUS_MESSAGE = 1000;

/**
 * Caps every error message a service sends: a message that repeats a huge input
 * back could exceed what the transport carries in a status and stall the
 * connection, and helps no caller.
 */
export function boundedErrors(max = MAX_STATUS_MESSAGE): ServerMiddleware {
  return async function* (call, context) {
    try {
      return yield* call.next(call.request, context);
    } catch (err) {
      if (err instanceof ServerError && err.details.length > max)
        throw new ServerError(err.code, `${err.details.slice(0, max)}… (message cut)`);
      throw err;
    }
  };
}
