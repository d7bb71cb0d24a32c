import type { ServiceImplementation } from "nice-grpc";
import { HealthDefinition, HealthServiceImpl, type HealthState } from "nice-grpc-server-health";
import { HealthCheckResponse_ServingStatus as Serving } from "nice-grpc-server-health/lib/proto/grpc/health/v1/health";

/**
 * The gRPC health service over `health`, whose Watch calls end once `draining` aborts,
 * NOT_SERVING said last: a graceful shutdown waits for every call, and a client that
 * watches health (gRPC's client-side health checking) would hold it for the whole
 * grace period, then be cut off.
 */
export function healthService(
  health: HealthState,
  draining: AbortSignal,
): ServiceImplementation<typeof HealthDefinition> {
  const impl = HealthServiceImpl(health);
  return {
    check: impl.check,
    async *watch(request, context) {
      const signal = AbortSignal.any([context.signal, draining]);
      let last: Serving | undefined;
      try {
        for await (const res of impl.watch(request, { ...context, signal })) {
          last = res.status;
          yield res;
        }
      } catch (err) {
        // (the watch waits for a change until its signal aborts: here, the drain's)
        if (!draining.aborted || context.signal.aborted) throw err;
      }
      if (last !== Serving.NOT_SERVING) yield { status: Serving.NOT_SERVING };
    },
  };
}
