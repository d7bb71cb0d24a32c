import {
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
 * appended) and `places_ready_at_head` of the answer unset. (Forward, the router's
 * lane, is not served: point only movers at it.) With `withoutHeldTasks`, a build
 * from before HeldTasks (2026-12-06), which answers it UNIMPLEMENTED as grpc-js does
 * a method it does not know.
 */
export async function olderPeer(
  address: string,
  options: { withoutHeldTasks?: boolean } = {},
): Promise<{ address: string; close: () => Promise<void> }> {
  const channel = createChannel(address);
  const worker = createClient(internal.ShardServiceDefinition, channel);
  const pass = (ctx: CallContext) => ({ metadata: ctx.metadata, signal: ctx.signal });
  const server = createServer();
  server.add(internal.ShardServiceDefinition, {
    importTasks: async (req, ctx) => ({
      ...(await worker.importTasks({ ...req, readyAtHead: false }, pass(ctx))),
      placesReadyAtHead: false,
    }),
    listQueues: (req, ctx) => worker.listQueues(req, pass(ctx)),
    lookupIdempotencyKeys: (req, ctx) => worker.lookupIdempotencyKeys(req, pass(ctx)),
    heldTasks: (req, ctx) => {
      if (options.withoutHeldTasks)
        throw new ServerError(Status.UNIMPLEMENTED, "The server does not implement this method");
      return worker.heldTasks(req, pass(ctx));
    },
    getShardStatus: (req, ctx) => worker.getShardStatus(req, pass(ctx)),
    interruptLeaseStream: (req, ctx) => worker.interruptLeaseStream(req, pass(ctx)),
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
