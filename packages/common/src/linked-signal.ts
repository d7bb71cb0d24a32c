/**
 * A signal that aborts when the first of `signals` does, with the reason of that one,
 * and `dispose` to unhook it. Unlike `AbortSignal.any`, it leaves nothing on the
 * sources once disposed: Node 20 keeps a reference per `any` call in each source's
 * set of dependants for as long as the source lives, so a call that links a
 * process-long signal (a server's drain) leaked one entry per call.
 */
export function linkedSignal(signals: readonly AbortSignal[]): {
  readonly signal: AbortSignal;
  dispose(): void;
} {
  const controller = new AbortController();
  const hooked: Array<[AbortSignal, () => void]> = [];
  for (const source of signals) {
    if (source.aborted) {
      controller.abort(source.reason);
      break;
    }
    const fire = () => controller.abort(source.reason);
    source.addEventListener("abort", fire, { once: true });
    hooked.push([source, fire]);
  }
  return {
    signal: controller.signal,
    dispose: () => {
      for (const [source, fire] of hooked) source.removeEventListener("abort", fire);
      hooked.length = 0;
    },
  };
}
