import {
  ServerError,
  Status,
  type CompatServiceDefinition,
  type ServiceImplementation,
} from "nice-grpc";

/**
 * Completes a partial service implementation: every method of `definition` that
 * `partial` lacks answers UNIMPLEMENTED (nice-grpc needs every method present).
 */
export function withUnimplemented<D extends CompatServiceDefinition>(
  definition: D,
  partial: Partial<ServiceImplementation<D>>,
): ServiceImplementation<D> {
  const impl: Record<string, unknown> = { ...partial };
  const methods = "methods" in definition ? definition.methods : definition;
  for (const name of Object.keys(methods as object)) {
    impl[name] ??= async () => {
      throw new ServerError(Status.UNIMPLEMENTED, `${name} is not part of this test double`);
    };
  }
  return impl as ServiceImplementation<D>;
}
