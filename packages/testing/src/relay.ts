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
  /**
   * From the next bytes the server sends that `match` accepts, what it sends on that
   * connection is held back (in order) until `release`: its replies come late, while
   * the client goes on sending.
   */
  holdReplies(match: (reply: Buffer) => boolean): HeldReplies;
  readonly dropped: number;
  close(): Promise<void>;
}

/** Replies held back by `Relay.holdReplies`. */
export interface HeldReplies {
  /** True once a reply was matched and is held. */
  readonly holding: boolean;
  /** Passes on what was held, and what comes after. */
  release(): void;
}

export async function startRelay(host: string, port: number): Promise<Relay> {
  let dropNext: ((reply: Buffer) => boolean) | undefined;
  let dropped = 0;
  let silent = false;
  const open = new Set<net.Socket>();
  const mute = new Set<net.Socket>();
  let holdNext: ((reply: Buffer) => boolean) | undefined;
  /** The connection whose replies are held, and what is held. */
  let held: { client: net.Socket; bytes: Buffer[] } | undefined;
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
      if (held?.client === client) {
        held.bytes.push(d);
        return;
      }
      if (!held && holdNext?.(d)) {
        holdNext = undefined;
        held = { client, bytes: [d] };
        return;
      }
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
    holdReplies: (match) => {
      holdNext = match;
      return {
        get holding() {
          return held !== undefined;
        },
        release() {
          holdNext = undefined;
          if (!held) return;
          const { client, bytes } = held;
          held = undefined;
          for (const b of bytes) client.write(b);
        },
      };
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
