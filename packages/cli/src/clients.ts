import {
  ChannelCredentials,
  createChannel,
  createClientFactory,
  Metadata,
  type Channel,
} from "nice-grpc";
import { deadlineMiddleware, type DeadlineOptions } from "nice-grpc-client-middleware-deadline";
import {
  AdminServiceDefinition,
  QueueServiceDefinition,
  type AdminServiceClient,
  type QueueServiceClient,
} from "@codeq/proto";
import type { GlobalOptions } from "./args";

const clientFactory = createClientFactory().use(deadlineMiddleware);

/**
 * Clients of one router, created on first use over one channel (TLS when asked).
 * Identity is the bearer token when one is given, else development identity
 * (x-codeq-tenant, x-codeq-roles), which a router takes only with it turned on.
 */
export class RouterClients {
  private channel: Channel | undefined;
  private queueClient: QueueServiceClient<DeadlineOptions> | undefined;
  private adminClient: AdminServiceClient<DeadlineOptions> | undefined;

  /**
   * @param queueAsAdmin state the admin role on QueueService calls too (the
   *   dead-letter queue calls need it)
   */
  constructor(
    private readonly options: GlobalOptions,
    private readonly queueAsAdmin = false,
  ) {}

  /** QueueService as the stated tenant, with the stated roles (the server's default without). */
  get queue(): QueueServiceClient<DeadlineOptions> {
    const roles = this.queueAsAdmin ? this.adminRoles() : this.options.roles;
    this.queueClient ??= clientFactory.create(QueueServiceDefinition, this.connect(), {
      "*": { metadata: this.metadata(roles) },
    });
    return this.queueClient;
  }

  /** AdminService: the admin role is always stated, with any others given. */
  get admin(): AdminServiceClient<DeadlineOptions> {
    this.adminClient ??= clientFactory.create(AdminServiceDefinition, this.connect(), {
      "*": { metadata: this.metadata(this.adminRoles()) },
    });
    return this.adminClient;
  }

  /** Options of one unary call: its deadline. */
  call(): DeadlineOptions {
    return { deadline: new Date(Date.now() + this.options.timeoutMs) };
  }

  /** Closes the channel so the process can exit. */
  close(): void {
    this.channel?.close();
    this.channel = undefined;
  }

  private connect(): Channel {
    const tls = this.options.tls;
    this.channel ??= createChannel(
      this.options.router,
      tls
        ? ChannelCredentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null)
        : undefined,
    );
    return this.channel;
  }

  private adminRoles(): string[] {
    return [...new Set(["admin", ...this.options.roles])];
  }

  /** The credential, when one is given; else the tenant and roles stated (development identity). */
  private metadata(roles: readonly string[]): Metadata {
    if (this.options.token !== undefined)
      return new Metadata({ authorization: `Bearer ${this.options.token}` });
    const metadata = new Metadata({ "x-codeq-tenant": this.options.tenant });
    if (roles.length > 0) metadata.set("x-codeq-roles", roles.join(","));
    return metadata;
  }
}
