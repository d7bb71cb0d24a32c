/**
 * Runs `start`; if it fails, runs `cleanUp` (whose own failure is ignored) and throws
 * `start`'s error. For a service's start-up steps after it has opened connections or
 * servers: a start that fails (its address taken, say) then leaves nothing running.
 */
export async function cleanUpOnFailure<T>(
  start: () => Promise<T>,
  cleanUp: () => Promise<unknown>,
): Promise<T> {
  try {
    return await start();
  } catch (err) {
    await cleanUp().catch(() => undefined);
    throw err;
  }
}
