import * as net from "node:net";

/**
 * A TCP relay to a server (a redis-server, a gRPC service) that can drop the
 * connection in place of one reply, stop listening for a while, or go silent: what a
 * client or server sees when the network or its peer goes away mid-call.
 */
export interface Relay {
  readonly port: number;
  /**
   * The next bytes the server sends (the next that `match` accepts, when given) are
   * not passed on: both sides are closed instead.
   */
  dropNextReply(match?: (reply: Buffer) => boolean): void;
  /** Stops listening for `ms`: connections are refused (the store is away). */
  refuseFor(ms: number): void;
  /**
   * Closes every connection and refuses new ones for `ms`: the server restarts (a
   * client's commands fail once its reconnects run out).
   */
  restart(ms: number): void;
  /**
   * Passes no more bytes either way and closes nothing: a peer that vanished without
   * closing its connections (its host gone, a firewall dropping packets).
   */
  silence(): void;
  /**
   * The connections open now pass no more bytes and stay open; new ones pass as before:
   * a peer's host gone without closing them, and back (a client that opens a new
   * connection reaches it).
   */
  silenceOpen(): void;
  readonly dropped: number;
  close(): Promise<void>;
}

export async function startRelay(host: string, port: number): Promise<Relay> {
  let dropNext: ((reply: Buffer) => boolean) | undefined;
  let dropped = 0;
  let silent = false;
  const open = new Set<net.Socket>();
  const mute = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, host);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      open.add(s);
      s.on("close", () => {
        open.delete(s);
        end();
      });
      s.on("error", end);
    }
    client.on("data", (d) => silent || mute.has(client) || upstream.write(d));
    upstream.on("data", (d: Buffer) => {
      if (silent || mute.has(client)) return;
      if (!dropNext?.(d)) {
        client.write(d);
        return;
      }
      dropNext = undefined;
      dropped++;
      end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const relayPort = (server.address() as net.AddressInfo).port;
  // listening again after `refuseFor` can find the port taken meanwhile: the relay then
  // stays away (the test sees its calls fail) rather than the test process ending
  server.on("error", () => undefined);
  let away: NodeJS.Timeout | undefined;
  const refuseFor = (ms: number) => {
    server.close();
    away = setTimeout(() => server.listen(relayPort, "127.0.0.1"), ms);
  };
  return {
    port: relayPort,
    dropNextReply: (match = () => true) => (dropNext = match),
    refuseFor,
    restart: (ms) => {
      refuseFor(ms);
      for (const s of open) s.destroy();
    },
    silence: () => (silent = true),
    silenceOpen: () => {
      for (const s of open) mute.add(s);
    },
    get dropped() {
      return dropped;
    },
    close: () =>
      new Promise<void>((resolve) => {
        clearTimeout(away);
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}
