import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import * as net from "node:net";
import { freePort, tryPort } from "./free-port";

/** A port of 127.0.0.1 something listens on, for a test that needs its address taken. */
export interface OccupiedPort {
  readonly port: number;
  /** `127.0.0.1:<port>`. */
  readonly address: string;
  close(): Promise<void>;
}

/** Listens on a free port of 127.0.0.1 until closed. */
export async function occupyPort(): Promise<OccupiedPort> {
  const server = net.createServer();
  server.listen(await freePort(), "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    address: `127.0.0.1:${port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Resolves once `port` of 127.0.0.1 can be listened on (and is let go again); rejects if it cannot. */
export async function portIsFree(port: number): Promise<void> {
  if ((await tryPort(port)) === undefined) throw new Error(`port ${port} of 127.0.0.1 is taken`);
}

/**
 * What a service that listens on two addresses (gRPC and metrics) must do when `which`
 * of them is taken: `start(listen, metricsListen)` fails with EADDRINUSE and leaves
 * nothing open behind it: `store`'s client count back where it was, the other address
 * free again. Throws what it found otherwise.
 */
export async function checkStartFailureLeavesNothing(
  store: { connectedClients(): Promise<number> },
  which: "grpc" | "metrics",
  start: (listen: string, metricsListen: string) => Promise<unknown>,
): Promise<void> {
  const before = await store.connectedClients();
  const taken = await occupyPort();
  const otherPort = await freePort();
  const other = `127.0.0.1:${otherPort}`;
  try {
    const [listen, metricsListen] =
      which === "grpc" ? [taken.address, other] : [other, taken.address];
    const failure = await start(listen, metricsListen).then(
      () => new Error("it started"),
      (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
    );
    if (!/EADDRINUSE|address already in use/.test(failure.message))
      throw new Error(`expected the start to fail with EADDRINUSE: ${failure.message}`);
    for (const deadline = Date.now() + 5_000; ; await sleep(20)) {
      const now = await store.connectedClients();
      if (now === before) break;
      if (Date.now() > deadline)
        throw new Error(
          `${now} clients on the store 5 s after the failed start, ${before} before it`,
        );
    }
    await portIsFree(otherPort);
  } finally {
    await taken.close();
  }
}
