import { AsyncResource } from "node:async_hooks";

/**
 * `AsyncResource.prototype.bind` without the per-call prototype that Node 20 gives
 * each bound function (nodejs/node#58218; fixed upstream in Node 24).
 *
 * Node's `bind` defines the deprecated `asyncResource` accessor (DEP0172) with two
 * `util.deprecate` wrappers, and each wrapper's prototype is set to a function made
 * for that call. Every such function becomes a prototype with a map of its own, and
 * maps live in the old generation. The map points back at the function, the function
 * at `bind`'s closure, and the closure at what was bound; so a young-generation GC
 * finds all of it reachable from the old generation and keeps it until a full GC.
 *
 * `node:http2` binds every client request (`ClientHttp2Session.request` runs its
 * connect step through an `AsyncResource`), so in a process making unary gRPC calls
 * every finished call's stream, call objects and buffers survived each scavenge. A
 * plain HTTP/2 client making 500 requests a second promoted about 1.7 MB per
 * scavenge (pauses 3.4–3.7 ms); the bench's `EnqueueBatch` client, 0.8 MB, with
 * pauses growing to 3–12 ms until a full GC (docs/performance.md, "Unary calls'
 * garbage").
 *
 * This `bind` does what Node's does (runs `fn` in the resource's async scope, with
 * `thisArg` or the caller's `this`, the same `length` and name, the same error for a
 * non-function) and keeps `asyncResource` as a plain property, which reading no longer
 * reports as deprecated: no per-call prototype, so a bound function and what it holds
 * die young.
 */
export function leanBind<F extends (...args: never[]) => unknown>(
  this: AsyncResource,
  fn: F,
  thisArg?: unknown,
): F {
  if (typeof fn !== "function") {
    const error = new TypeError(
      `The "fn" argument must be of type function. Received type ${typeof fn}`,
    );
    throw Object.assign(error, { code: "ERR_INVALID_ARG_TYPE" });
  }
  const resource = this;
  const call = fn as unknown as (this: unknown, ...args: unknown[]) => unknown;
  const bound =
    thisArg === undefined
      ? function bound(this: unknown, ...args: unknown[]) {
          return resource.runInAsyncScope(call, this, ...args);
        }
      : resource.runInAsyncScope.bind(resource, call, thisArg);
  Object.defineProperties(bound, {
    length: { configurable: true, enumerable: false, value: fn.length, writable: false },
    asyncResource: { configurable: true, enumerable: true, value: resource, writable: true },
  });
  return bound as unknown as F;
}

/**
 * Whether `bind` as this Node defines it has the defect: an `asyncResource` accessor
 * whose getter's prototype is not `Function.prototype` (a function made for the call).
 */
export function bindHasPerCallPrototype(bind: AsyncResource["bind"]): boolean {
  const bound = bind.call(new AsyncResource("codeq-bind-probe"), () => undefined);
  const getter = Object.getOwnPropertyDescriptor(bound, "asyncResource")?.get;
  return getter !== undefined && Object.getPrototypeOf(getter) !== Function.prototype;
}

/**
 * Replaces `AsyncResource.prototype.bind` with `leanBind` in this process, when the
 * running Node's own `bind` has the defect (Node 20; a Node without it is left alone).
 * Every codeQ process calls this at start: the services, the bench and its clients,
 * the CLI, the demo. A Node program that makes many unary gRPC or HTTP/2 client calls
 * may do the same. Idempotent; returns whether `leanBind` is in place afterwards.
 */
export function installLeanAsyncBind(): boolean {
  const proto = AsyncResource.prototype as { bind: unknown };
  if (proto.bind === leanBind) return true;
  if (!bindHasPerCallPrototype(AsyncResource.prototype.bind)) return false;
  proto.bind = leanBind;
  return true;
}
