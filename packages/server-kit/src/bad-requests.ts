/**
 * Requests the generated decoder refuses: bytes that are not a message of the method,
 * or a 64-bit number past what a JavaScript number holds (ts-proto reads `uint64` and
 * `int64` fields as numbers and throws beyond 2^53). grpc-js answers a deserializer
 * that throws with INTERNAL "Error deserializing request", a status that tells the
 * caller nothing and reads as the server's fault. A definition made with
 * `decodingSafely` hands such a request on as a `BadRequest` instead, and
 * `rejectBadRequests` answers it INVALID_ARGUMENT, naming what the decoder refused,
 * before any handler sees it. Routers and shard workers answer alike.
 */
import { messageOf } from "@codeq/common";
import { ServerError, Status, type ServerMiddleware } from "nice-grpc";

/**
 * The status message for a request whose bytes the generated decoder refuses: the same
 * from a router and from a shard worker decoding a call the router forwarded as bytes.
 */
export function undecodableRequest(reason: string): string {
  return `the request is not a valid message of this method: ${reason.slice(0, 200)}`;
}

/** A request that could not be decoded, in place of the message. */
export class BadRequest {
  constructor(readonly reason: string) {}

  error(): ServerError {
    return new ServerError(Status.INVALID_ARGUMENT, undecodableRequest(this.reason));
  }
}

/** `type.decode(bytes)`, or a BadRequest saying why it failed. */
export function safeDecode(
  type: { decode(bytes: Uint8Array): unknown },
  bytes: Uint8Array,
): unknown {
  try {
    return type.decode(bytes);
  } catch (err) {
    return new BadRequest(messageOf(err));
  }
}

interface TsProtoDefinition {
  readonly methods: object;
}

/**
 * `definition` (a ts-proto service definition) with every request decoded by
 * `safeDecode`: serve it with `rejectBadRequests` among the server's middleware.
 */
export function decodingSafely<D extends TsProtoDefinition>(definition: D): D {
  const methods: Record<string, unknown> = {};
  for (const [key, method] of Object.entries(definition.methods) as [string, object][]) {
    const { requestType } = method as { requestType: { decode(bytes: Uint8Array): unknown } };
    const decode = (bytes: Uint8Array) => safeDecode(requestType, bytes);
    methods[key] = { ...method, requestType: { ...requestType, decode } };
  }
  return { ...definition, methods };
}

/**
 * Server middleware answering a BadRequest (a unary request, or any message of a
 * request stream) INVALID_ARGUMENT. `streams` says which methods' request streams to
 * look into (by path, `/<service>/<method>`): only those whose definition decodes
 * safely can carry one, and each message of a stream looked into costs a step more.
 */
export function rejectBadRequests(
  streams: (path: string) => boolean = () => true,
): ServerMiddleware {
  return async function* (call, context) {
    if (call.method.requestStream) {
      if (!streams(call.method.path)) return yield* call.next(call.request, context);
      const source = call.request as AsyncIterable<unknown>;
      const checked = (async function* () {
        for await (const message of source) {
          if (message instanceof BadRequest) throw message.error();
          yield message;
        }
      })();
      return yield* call.next(checked as typeof call.request, context);
    }
    if (call.request instanceof BadRequest) throw call.request.error();
    return yield* call.next(call.request, context);
  };
}
