import { createServer, type Server } from "nice-grpc";

/** A nice-grpc server listening on 127.0.0.1 with a port the OS chose. */
export interface TestGrpcServer {
  readonly server: Server;
  readonly port: number;
  /** host:port to dial. */
  readonly address: string;
  /** Graceful shutdown, forced after `graceMs` (default 2 s). */
  stop(graceMs?: number): Promise<void>;
}

/** Creates a server, lets `register` add services to it, and listens on port 0. */
export async function startGrpcServer(register: (server: Server) => void): Promise<TestGrpcServer> {
  const server = createServer();
  register(server);
  const port = await server.listen("127.0.0.1:0");
  return {
    server,
    port,
    address: `127.0.0.1:${port}`,
    async stop(graceMs = 2_000) {
      const timer = setTimeout(() => server.forceShutdown(), graceMs);
      try {
        await server.shutdown();
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
