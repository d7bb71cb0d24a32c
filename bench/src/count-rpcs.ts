import type { CallOptions, ClientMiddleware, ClientMiddlewareCall } from "nice-grpc";

async function* counted<T>(messages: AsyncIterable<T>, count: () => void): AsyncGenerator<T> {
  for await (const message of messages) {
    count();
    yield message;
  }
}

/**
 * A client middleware that calls `count` once per RPC: once for a unary call; on a
 * streaming call once per message sent and once per message received (a stream's
 * messages are what a proxy in between has to handle one by one).
 */
export function countRpcs(count: () => void): ClientMiddleware {
  return async function* <Req, Res>(
    call: ClientMiddlewareCall<Req, Res>,
    options: CallOptions,
  ): AsyncGenerator<Res, Res | void, undefined> {
    if (!call.requestStream && !call.responseStream) {
      count();
      return yield* call.next(call.request, options);
    }
    if (!call.requestStream) count();
    const request = call.requestStream ? counted(call.request, count) : call.request;
    if (call.responseStream) return yield* counted(call.next(request, options), count);
    const response = yield* call.next(request, options);
    count();
    return response;
  };
}
