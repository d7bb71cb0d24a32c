import { createChannel, createClient, Metadata, type Channel } from "nice-grpc";
import {
  internal,
  LeaseStreamRequest,
  QueueServiceDefinition,
  type QueueServiceClient,
  type LeaseStreamResponse,
  type LeasedTask,
} from "@codeq/proto";
import { Channel as Outbox, createLogger } from "@codeq/server-kit";
import { RedisServer, startRelay, steady, type Relay } from "@codeq/testing";
import { shardConfig, type ShardConfig } from "../config";
import { startShardWorker, type ShardWorker } from "../shard-worker";

let counter = 0;

/** A shard worker on a real redis-server and a real gRPC port, with clients per tenant. */
export interface ShardFixture {
  readonly worker: ShardWorker;
  readonly server: RedisServer;
  readonly address: string;
  /** A client whose calls carry `x-codeq-tenant: tenant` (and roles, when given). */
  client(tenant: string, roles?: string): QueueServiceClient;
  /** A client with no identity at all. */
  anonymous(): QueueServiceClient;
  /** A client of the internal codeq.internal.v1.ShardService (no identity). */
  shardClient(): internal.ShardServiceClient;
  restart(overrides?: Partial<ShardConfig>): Promise<void>;
  close(): Promise<void>;
}

export async function shardFixture(
  overrides: Partial<ShardConfig> = {},
  server?: RedisServer,
): Promise<ShardFixture> {
  const redis = server ?? (await RedisServer.start());
  const keyPrefix = `${redis.keyPrefix}-${++counter}`;
  const config = (extra: Partial<ShardConfig> = {}) =>
    shardConfig({
      id: "a",
      listen: "127.0.0.1:0",
      metricsListen: "127.0.0.1:0",
      redisUrl: redis.url,
      keyPrefix,
      devIdentity: true,
      graceMs: 2_000,
      ...overrides,
      ...extra,
    });
  const channels: Channel[] = [];
  let worker = await startShardWorker(config(), createLogger("shard-test", "silent"));
  const fx: ShardFixture = {
    get worker() {
      return worker;
    },
    server: redis,
    get address() {
      return `127.0.0.1:${worker.port}`;
    },
    client(tenant, roles) {
      const channel = createChannel(`127.0.0.1:${worker.port}`);
      channels.push(channel);
      const metadata = new Metadata({ "x-codeq-tenant": tenant });
      if (roles) metadata.set("x-codeq-roles", roles);
      return createClient(QueueServiceDefinition, channel, { "*": { metadata } });
    },
    anonymous() {
      const channel = createChannel(`127.0.0.1:${worker.port}`);
      channels.push(channel);
      return createClient(QueueServiceDefinition, channel);
    },
    shardClient() {
      const channel = createChannel(`127.0.0.1:${worker.port}`);
      channels.push(channel);
      return createClient(internal.ShardServiceDefinition, channel);
    },
    async restart(extra = {}) {
      await worker.stop();
      worker = await startShardWorker(
        config({ ...extra, listen: `127.0.0.1:0` }),
        createLogger("shard-test", "silent"),
      );
    },
    async close() {
      for (const c of channels) c.close();
      await worker.stop();
      if (!server) await redis.stop();
    },
  };
  return fx;
}

/**
 * `relayedShardFixture` for a describe block: started before its tests, closed after
 * them; `fx` and `relay` are there once its tests run.
 */
export function useRelayedShard(overrides: Partial<ShardConfig> = {}): {
  readonly fx: ShardFixture;
  readonly relay: Relay;
} {
  let started: Awaited<ReturnType<typeof relayedShardFixture>> | undefined;
  beforeAll(async () => {
    started = await relayedShardFixture(overrides);
  });
  afterAll(() => started?.close());
  return {
    get fx() {
      return started!.fx;
    },
    get relay() {
      return started!.relay;
    },
  };
}

/**
 * A shard worker whose store connection goes through a relay (its own redis-server),
 * for tests of a store that drops a reply, restarts or goes silent.
 */
export async function relayedShardFixture(
  overrides: Partial<ShardConfig> = {},
): Promise<{ fx: ShardFixture; relay: Relay; close(): Promise<void> }> {
  const server = await RedisServer.start();
  const relay = await startRelay(server.host, server.port);
  const fx = await shardFixture(
    { ...overrides, redisUrl: `redis://127.0.0.1:${relay.port}` },
    server,
  );
  return {
    fx,
    relay,
    async close() {
      await fx.close();
      await relay.close();
      await server.stop();
    },
  };
}

/**
 * A worker side of a LeaseStream driven by the test: `send` queues a request,
 * `next()` waits for the next response (or the stream's end), `close()` half-closes.
 */
export class StreamDriver {
  private readonly outbox: Partial<LeaseStreamRequest>[] = [];
  private wakeOut: (() => void) | undefined;
  private closed = false;
  private readonly inbox: LeaseStreamResponse[] = [];
  private wakeIn: (() => void) | undefined;
  private ended: { error?: unknown } | undefined;
  readonly abort = new AbortController();

  constructor(client: QueueServiceClient) {
    const self = this;
    async function* requests() {
      for (;;) {
        const next = self.outbox.shift();
        if (next) {
          yield next as LeaseStreamRequest;
          continue;
        }
        if (self.closed) return;
        await new Promise<void>((r) => (self.wakeOut = r));
      }
    }
    void (async () => {
      try {
        for await (const res of client.leaseStream(requests(), { signal: this.abort.signal })) {
          this.inbox.push(res);
          this.wakeIn?.();
        }
        this.ended = {};
      } catch (error) {
        this.ended = { error };
      }
      this.wakeIn?.();
    })();
  }

  send(req: Partial<LeaseStreamRequest>): void {
    this.outbox.push({ credits: 0, requestId: 0, acks: [], nacks: [], extends: [], ...req });
    this.wakeOut?.();
  }

  /** The next response; throws the stream's error; undefined when it ended cleanly. */
  async next(timeoutMs = 5_000): Promise<LeaseStreamResponse | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const res = this.inbox.shift();
      if (res) return res;
      if (this.ended) {
        if (this.ended.error) throw this.ended.error;
        return undefined;
      }
      if (Date.now() > deadline) throw new Error("no LeaseStream response in time");
      await new Promise<void>((r) => {
        this.wakeIn = r;
        setTimeout(r, 50);
      });
    }
  }

  /** Reads pushed tasks until at least `n` have come (other responses are skipped). */
  async pushed(n: number): Promise<LeasedTask[]> {
    const tasks: LeasedTask[] = [];
    while (tasks.length < n) tasks.push(...((await this.next())?.tasks?.tasks ?? []));
    return tasks;
  }

  /** True when a response is already waiting. */
  get pending(): number {
    return this.inbox.length;
  }

  close(): void {
    this.closed = true;
    this.wakeOut?.();
  }
}

/** Polls `check` until it returns true (bounded), for state that settles asynchronously. */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const SUB = (commands: string[], extra: Record<string, unknown> = {}) => ({
  subscribe: { commands, leaseDurationMs: 0, allTenants: false, maxBatch: 0, ...extra },
});

/**
 * A worker that reads slowly: `n` tasks of 512 KiB in `command` (one attempt each, more
 * than the transport buffers), a stream of `n` credits pushing one task a message, of
 * which the worker reads `reads` messages (the subscription first), then no more.
 * Resolves once the queue's count of leased tasks stops moving, with that count, the
 * messages read and the stream's two ends; `stop` cancels the stream.
 */
export async function slowReader(
  fx: ShardFixture,
  tenant: string,
  command: string,
  n: number,
  reads: number,
): Promise<{
  leased: number;
  read: LeaseStreamResponse[];
  requests: Outbox<LeaseStreamRequest>;
  responses: AsyncIterator<LeaseStreamResponse>;
  stop: () => Promise<void>;
}> {
  const c = fx.client(tenant);
  const payload = Buffer.alloc(512 * 1024, 1);
  for (let i = 0; i < n; i += 10)
    await c.enqueueBatch({
      tasks: Array.from({ length: Math.min(10, n - i) }, () => ({
        command,
        payload,
        maxAttempts: 1,
      })),
    });
  const requests = new Outbox<LeaseStreamRequest>();
  requests.push(LeaseStreamRequest.fromPartial({ ...SUB([command], { maxBatch: 1 }), credits: n }));
  const abort = new AbortController();
  const responses = c.leaseStream(requests, { signal: abort.signal })[Symbol.asyncIterator]();
  const read: LeaseStreamResponse[] = [];
  for (let i = 0; i < reads; i++) read.push((await responses.next()).value as LeaseStreamResponse);
  const queue = { command, tenant };
  const leased = await steady(async () => (await fx.worker.engine.stats(queue)).leased);
  return {
    leased,
    read,
    requests,
    responses,
    stop: async () => {
      abort.abort();
      await responses.next().catch(() => undefined);
      requests.close();
    },
  };
}
