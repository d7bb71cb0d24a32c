import {
  createChannel,
  createClient,
  Metadata,
  type Channel,
  type ChannelCredentials,
} from "nice-grpc";
import {
  AdminServiceDefinition,
  LeaseStreamRequest,
  QueueServiceDefinition,
  type AdminServiceClient,
  type LeaseStreamResponse,
  type QueueServiceClient,
} from "@codeq/proto";
import { cleanUpOnFailure, createLogger, Channel as Outbox } from "@codeq/server-kit";
import { shardConfig, startShardWorker, type ShardConfig, type ShardWorker } from "@codeq/shard";
import { RedisMapSource, type ShardMap, type ShardMapDraft } from "@codeq/shardmap";
import { freePort, RedisServer } from "@codeq/testing";
import { routerConfig, type RouterConfig } from "../config";
import { startRouter, type Router } from "../router";

let counter = 0;

/**
 * An in-process cluster on one real redis-server: shard workers (each on its own
 * key prefix) following a shard map under their own control prefix, and a router
 * on real gRPC ports. Processes, kills and restarts are what the local-cluster
 * tests do; this one is for the router's logic, fast.
 */
export interface RouterCluster {
  readonly server: RedisServer;
  readonly source: RedisMapSource;
  /** The control prefix the map is stored under (shardMapKey(prefix) is its key). */
  readonly prefix: string;
  readonly router: Router;
  readonly workers: Map<string, ShardWorker>;
  readonly addresses: Map<string, string>;
  client(tenant: string, roles?: string): QueueServiceClient;
  /** A client whose calls carry exactly `metadata` (e.g. an authorization header). */
  clientWith(metadata: Record<string, string>): QueueServiceClient;
  adminWith(metadata: Record<string, string>): AdminServiceClient;
  admin(tenant?: string): AdminServiceClient;
  /** Rewrites the map (compare-and-set on the current version). */
  change(edit: (draft: ShardMapDraft) => ShardMapDraft): Promise<ShardMap>;
  /** Stops a shard worker (its address stays in the map). */
  stopShard(id: string): Promise<void>;
  /** Starts a stopped shard worker again on its address. */
  startShard(id: string): Promise<void>;
  close(): Promise<void>;
}

export async function routerCluster(
  options: {
    shards?: string[];
    commands?: Record<string, string>;
    router?: Partial<RouterConfig>;
    shard?: Partial<ShardConfig>;
    /** Settings of one shard worker, over `shard`. */
    perShard?: Record<string, Partial<ShardConfig>>;
    /** Credentials of the test's client channels to the router (TLS tests). */
    clientCredentials?: ChannelCredentials;
    server?: RedisServer;
    /** The control store, when not `server` (a test that stops it alone). */
    control?: RedisServer;
  } = {},
): Promise<RouterCluster> {
  const server = options.server ?? (await RedisServer.start());
  const n = ++counter;
  const prefix = `${server.keyPrefix}-rc${n}`;
  const ids = options.shards ?? ["a", "b"];
  const controlUrl = (options.control ?? server).url;
  const source = new RedisMapSource({ url: controlUrl, prefix });
  const addresses = new Map<string, string>();
  for (const id of ids) addresses.set(id, `127.0.0.1:${await freePort()}`);
  await source.compareAndSet(
    0,
    {
      shards: Object.fromEntries(
        ids.map((id) => [id, { endpoint: addresses.get(id)!, state: "active" }]),
      ),
      defaultShard: ids[0]!,
      commands: options.commands ?? {},
      tenants: {},
      migrations: [],
    },
    { actor: "test", action: "Bootstrap", summary: "" },
  );
  const workers = new Map<string, ShardWorker>();
  const startShard = async (id: string) => {
    const worker = await startShardWorker(
      shardConfig({
        id,
        listen: addresses.get(id)!,
        metricsListen: "",
        redisUrl: server.url,
        keyPrefix: `${prefix}-${id}`,
        devIdentity: true,
        graceMs: 1_000,
        controlUrl,
        controlPrefix: prefix,
        mapPollMs: 1_000,
        ...options.shard,
        ...options.perShard?.[id],
      }),
      createLogger(`shard-${id}`, "silent"),
    );
    workers.set(id, worker);
  };
  const router = await cleanUpOnFailure(
    async () => {
      for (const id of ids) await startShard(id);
      return startRouter(
        routerConfig({
          listen: "127.0.0.1:0",
          metricsListen: "127.0.0.1:0",
          controlUrl,
          controlPrefix: prefix,
          devIdentity: true,
          graceMs: 1_000,
          breakerResetMs: 500,
          ...options.router,
        }),
        createLogger("router", (process.env.ROUTER_TEST_LOG ?? "silent") as "silent"),
      );
    },
    async () => {
      // a start that failed (a port taken, say) leaves nothing running to keep jest alive
      for (const w of workers.values()) await w.stop();
      await source.close();
      if (!options.server) await server.stop();
    },
  );
  const channels: Channel[] = [];
  const channel = () => {
    const c = createChannel(`127.0.0.1:${router.port}`, options.clientCredentials);
    channels.push(c);
    return c;
  };
  const meta = (tenant: string, roles?: string) => {
    const m = new Metadata({ "x-codeq-tenant": tenant });
    if (roles) m.set("x-codeq-roles", roles);
    return { "*": { metadata: m } };
  };
  return {
    server,
    source,
    prefix,
    router,
    workers,
    addresses,
    client: (tenant, roles) => createClient(QueueServiceDefinition, channel(), meta(tenant, roles)),
    clientWith: (m) =>
      createClient(QueueServiceDefinition, channel(), { "*": { metadata: new Metadata(m) } }),
    adminWith: (m) =>
      createClient(AdminServiceDefinition, channel(), { "*": { metadata: new Metadata(m) } }),
    admin: (tenant = "ops") =>
      createClient(AdminServiceDefinition, channel(), meta(tenant, "admin")),
    async change(edit) {
      const current = (await source.get())!;
      const { version: _v, updatedAtMs: _u, ...draft } = current;
      return source.compareAndSet(current.version, edit(draft), {
        actor: "test",
        action: "Change",
        summary: "",
      });
    },
    async stopShard(id) {
      await workers.get(id)?.stop();
      workers.delete(id);
    },
    startShard,
    async close() {
      for (const c of channels) c.close();
      await router.stop();
      for (const w of workers.values()) await w.stop();
      await source.close();
      if (!options.server) await server.stop();
    },
  };
}

/** Polls `check` until it returns true or `timeoutMs` passes; returns the time it took. */
export async function within(
  timeoutMs: number,
  check: () => Promise<boolean> | boolean,
): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Enqueues `n` tasks of `command` for tenant t1 through the router, 512 KiB each:
 * together more than the transports between a shard, the router and a client take.
 */
export async function enqueueLarge(rc: RouterCluster, command: string, n: number): Promise<void> {
  const payload = Buffer.alloc(512 * 1024, 1);
  const c = rc.client("t1");
  for (let i = 0; i < n; i += 10)
    await c.enqueueBatch({
      tasks: Array.from({ length: Math.min(10, n - i) }, () => ({ command, payload })),
    });
}

/** A LeaseStream of tenant t1 that reads its first answer, then nothing until `readOn`. */
export function slowStream(rc: RouterCluster): { s: Stream; readOn: () => void } {
  let readOn!: () => void;
  const s = new Stream(rc, "t1", new Promise<void>((resolve) => (readOn = resolve)));
  return { s, readOn };
}

/** A LeaseStream client of the router driven by hand. */
export class Stream {
  readonly requests = new Outbox<LeaseStreamRequest>();
  readonly received: LeaseStreamResponse[] = [];
  readonly abort = new AbortController();
  failure: unknown;
  /** The stream has ended (the router ended it, or `close`). */
  ended = false;
  private readonly done: Promise<void>;

  /**
   * `caller`: a tenant (development identity) or a client of the router. `reading`:
   * past its first answer, the stream's answers are read on only once it resolves (a
   * slow reader).
   */
  constructor(
    rc: RouterCluster,
    caller: string | QueueServiceClient = "t1",
    reading?: Promise<void>,
  ) {
    const client = typeof caller === "string" ? rc.client(caller) : caller;
    const responses = client.leaseStream(this.requests, { signal: this.abort.signal });
    this.done = (async () => {
      try {
        for await (const r of responses) {
          this.received.push(r);
          await reading;
        }
      } catch (err) {
        this.failure = err;
      }
      this.ended = true;
    })();
  }

  send(req: Parameters<typeof LeaseStreamRequest.fromPartial>[0]): void {
    this.requests.push(LeaseStreamRequest.fromPartial(req));
  }

  tasks() {
    return this.received.flatMap((r) => r.tasks?.tasks ?? []);
  }

  settled(requestId: number) {
    return this.received.find((r) => r.settled?.requestId === requestId)?.settled;
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.done;
  }
}

/**
 * A fresh cluster for each test of the file, all on one redis-server started for the
 * file; spies are restored after each test. Returns what gives the current cluster.
 */
export function clusterPerTest(
  options: Omit<Parameters<typeof routerCluster>[0] & object, "server"> = {},
): () => RouterCluster {
  let server: RedisServer | undefined;
  let rc: RouterCluster | undefined;
  beforeAll(async () => {
    server = await RedisServer.start();
  });
  afterAll(async () => {
    await server?.stop();
  });
  beforeEach(async () => {
    rc = await routerCluster({ ...options, server });
  });
  afterEach(async () => {
    jest.restoreAllMocks();
    await rc?.close();
    rc = undefined;
  });
  return () => {
    if (!rc) throw new Error("no cluster outside a test");
    return rc;
  };
}
