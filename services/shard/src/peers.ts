import { createChannel, createClientFactory, Metadata, type Channel } from "nice-grpc";
import { deadlineMiddleware, type DeadlineOptions } from "nice-grpc-client-middleware-deadline";
import { internal } from "@codeq/proto";
import { channelCredentials, IDENTITY_HEADERS, type ClientTls } from "@codeq/server-kit";

const clients = createClientFactory().use(deadlineMiddleware);

export type PeerClient = internal.ShardServiceClient<DeadlineOptions>;

/** Call options of a call to another shard worker: its deadline. */
export type PeerCall = () => { deadline: Date };

/**
 * The other shard workers' ShardService, as this one calls it (the migration mover,
 * idempotency keys during a move): one channel per endpoint, kept until `close`, with
 * the routers' secret that shard workers accept on that service.
 */
export class PeerShards {
  private readonly channels = new Map<string, Channel>();

  constructor(
    private readonly options: {
      /** The cluster's router secret: shard workers accept ShardService calls only with it. */
      readonly routerSecret?: string | undefined;
      /** TLS towards other shard workers (their CA, and this shard's certificate for mTLS). */
      readonly tls?: ClientTls | undefined;
    } = {},
  ) {}

  client(endpoint: string): PeerClient {
    let channel = this.channels.get(endpoint);
    if (!channel)
      this.channels.set(
        endpoint,
        (channel = createChannel(endpoint, channelCredentials(this.options.tls))),
      );
    const metadata = new Metadata();
    if (this.options.routerSecret !== undefined)
      metadata.set(IDENTITY_HEADERS.routerSecret, this.options.routerSecret);
    return clients.create(internal.ShardServiceDefinition, channel, { "*": { metadata } });
  }

  close(): void {
    for (const c of this.channels.values()) c.close();
    this.channels.clear();
  }
}
