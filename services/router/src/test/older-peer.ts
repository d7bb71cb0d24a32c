import {
  ClientError,
  createChannel,
  createClient,
  createServer,
  ServerError,
  Status,
  type CallContext,
} from "nice-grpc";
import { internal } from "@codeq/proto";
import { freePort } from "@codeq/testing";

/**
 * A shard worker as a build from before 2026-12-07 answers other workers: a server for
 * the unary calls of codeq.internal.v1.ShardService that passes each to a real worker
 * at `address`, with the two fields that build lacks taken out of ImportTasks, as its
 * protobuf code would leave them: `ready_at_head` of the request unread (every batch
 * appended) and `places_ready_at_head` of the answer unset; the worker's statuses
 * pass through as they are. (Forward, the router's lane, is not served: while the map
 * names the stand-in, a router's calls for that shard's queues fail.) With `withoutHeldTasks`, a build
 * from before HeldTasks (2026-12-06), which answers it UNIMPLEMENTED as grpc-js does
 * a method it does not know.
 */
export async function olderPeer(
  address: string,
  options: { withoutHeldTasks?: boolean } = {},
): Promise<{ address: string; close: () => Promise<void> }> {
  const channel = createChannel(address);
  const worker = createClient(internal.ShardServiceDefinition, channel);
  const callOptions = (ctx: CallContext) => ({ metadata: ctx.metadata, signal: ctx.signal });
  /** The worker's answer to a call, its error status as the worker gave it. */
  const pass = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (err) {
      if (err instanceof ClientError) throw new ServerError(err.code, err.details);
      throw err;
    }
  };
  const server = createServer();
  server.add(internal.ShardServiceDefinition, {
    importTasks: async (req, ctx) => ({
      ...(await pass(() => worker.importTasks({ ...req, readyAtHead: false }, callOptions(ctx)))),
      placesReadyAtHead: false,
    }),
    listQueues: (req, ctx) => pass(() => worker.listQueues(req, callOptions(ctx))),
    lookupIdempotencyKeys: (req, ctx) =>
      pass(() => worker.lookupIdempotencyKeys(req, callOptions(ctx))),
    heldTasks: (req, ctx) => {
      if (options.withoutHeldTasks)
        throw new ServerError(Status.UNIMPLEMENTED, "The server does not implement this method");
      return pass(() => worker.heldTasks(req, callOptions(ctx)));
    },
    getShardStatus: (req, ctx) => pass(() => worker.getShardStatus(req, callOptions(ctx))),
    interruptLeaseStream: (req, ctx) =>
      pass(() => worker.interruptLeaseStream(req, callOptions(ctx))),
    // eslint-disable-next-line require-yield
    async *forward() {
      throw new ServerError(Status.UNIMPLEMENTED, "Forward is not served by this stand-in");
    },
  });
  const listen = `127.0.0.1:${await freePort()}`;
  await server.listen(listen);
  return {
    address: listen,
    close: async () => {
      await server.shutdown();
      channel.close();
    },
  };
}
