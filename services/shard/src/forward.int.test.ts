import { ClientError, createChannel, createClient, Metadata, Status } from "nice-grpc";
import {
  AckRequest,
  EnqueueBatchRequest,
  ExtendRequest,
  internal,
  LeaseRequest,
  NackRequest,
} from "@codeq/proto";
import { RedisMapSource } from "@codeq/shardmap";
import { Channel } from "@codeq/server-kit";
import { RedisServer } from "@codeq/testing";
import { eventually, shardFixture, type ShardFixture } from "./test/fixture";

interface Codec<T> {
  encode(m: T): { finish(): Uint8Array };
  fromPartial(m: never): T;
}

type Call = Omit<
  Parameters<typeof internal.ForwardRequest.fromPartial>[0],
  "enqueue" | "ack" | "nack" | "extend" | "lease"
> & {
  enqueue?: Parameters<typeof EnqueueBatchRequest.fromPartial>[0];
  ack?: Parameters<typeof AckRequest.fromPartial>[0];
  nack?: Parameters<typeof NackRequest.fromPartial>[0];
  extend?: Parameters<typeof ExtendRequest.fromPartial>[0];
  lease?: Parameters<typeof LeaseRequest.fromPartial>[0];
};

/** A Forward stream as a router drives it: calls in, answers collected by seq. */
class Forwarder {
  private readonly requests = new Channel<internal.ForwardRequest>();
  readonly answers = new Map<number, internal.ForwardResponse>();
  drainingSeen = false;
  readonly done: Promise<unknown>;
  /** Cancels the stream, as a router that crashed or lost its connection does. */
  readonly abort = new AbortController();
  private arrived: (() => void) | undefined;

  constructor(port: number, secret?: string) {
    const channel = createChannel(`127.0.0.1:${port}`);
    const metadata = new Metadata();
    if (secret) metadata.set("x-codeq-router-secret", secret);
    const client = createClient(internal.ShardServiceDefinition, channel, {
      "*": { metadata },
    });
    this.done = (async () => {
      try {
        for await (const a of client.forward(this.requests, { signal: this.abort.signal })) {
          // as a router does: nothing more on a draining shard's stream, half-close it
          if (a.draining) {
            this.drainingSeen = true;
            this.requests.close();
          } else this.answers.set(a.seq, a);
          this.arrived?.();
        }
      } finally {
        channel.close();
        this.arrived?.();
      }
    })().then(
      () => "ended",
      (err: unknown) => err,
    );
  }

  send(seq: number, tenant: string, tasks: object[], roles = "producer", mapVersion = 0): void {
    this.call({ seq, tenant, roles, mapVersion, enqueue: { tasks } });
  }

  /** Any call: the caller's fields, and the call as its request message (encoded here). */
  call(req: Call): void {
    const { enqueue, ack, nack, extend, lease, ...caller } = req;
    const bytes = <T>(type: Codec<T>, m: unknown) =>
      m === undefined ? undefined : type.encode(type.fromPartial(m as never)).finish();
    this.push({
      principal: `svc-${caller.tenant ?? ""}`,
      ...caller,
      enqueue: bytes(EnqueueBatchRequest, enqueue),
      ack: bytes(AckRequest, ack),
      nack: bytes(NackRequest, nack),
      extend: bytes(ExtendRequest, extend),
      lease: bytes(LeaseRequest, lease),
    });
  }

  /** A ForwardRequest as given, its call's bytes too. */
  push(req: Parameters<typeof internal.ForwardRequest.fromPartial>[0]): void {
    this.requests.push(internal.ForwardRequest.fromPartial(req));
  }

  async answer(seq: number): Promise<internal.ForwardResponse> {
    for (;;) {
      const a = this.answers.get(seq);
      if (a) return a;
      const ended = await Promise.race([
        new Promise<false>((r) => (this.arrived = () => r(false))),
        this.done.then(() => true),
      ]);
      if (ended && !this.answers.has(seq))
        throw new Error(`the stream ended before answering ${seq}`);
    }
  }

  close(): void {
    this.requests.close();
  }
}

const rel = (r: internal.ReleaseRequest) => internal.ReleaseRequest.encode(r).finish();

const codes = (a: internal.ForwardResponse) =>
  a.enqueued ? a.enqueued.results.map((r) => r.status!.code) : a.error!.code;

const SECRET = "a-router-secret-of-at-least-32-characters";

let server: RedisServer;
beforeAll(async () => (server = await RedisServer.start()));
afterAll(() => server.stop());

describe("Forward (the router's stream for enqueues and settlements)", () => {
  let fx: ShardFixture;
  beforeEach(async () => (fx = await shardFixture({}, server)));
  afterEach(() => fx.close());

  const ready = (command: string, tenant: string) =>
    fx.worker.engine.stats({ command, tenant }).then((s) => s.ready);

  it("stores each batch as its own caller's, and answers each by its seq", async () => {
    const f = new Forwarder(fx.worker.port);
    f.send(1, "t1", [{ command: "FW" }, { command: "FW" }]);
    f.send(2, "t2", [{ command: "FW" }]);
    f.send(3, "t1", [{ command: "FW" }], "worker"); // no right to enqueue
    f.send(4, "t1", [{ command: "FW" }, { command: "FW", priority: 10 }]); // all or nothing
    f.send(5, "bad tenant", [{ command: "FW" }]);
    f.send(6, "t2", [{ command: "FW" }]);
    // bytes that are no EnqueueBatchRequest: that call is refused, the stream goes on
    f.push({ seq: 7, tenant: "t1", roles: "producer", enqueue: Buffer.from([0xff]) });
    expect(codes(await f.answer(1))).toEqual([0, 0]);
    expect(codes(await f.answer(2))).toEqual([0]);
    expect(codes(await f.answer(3))).toBe(Status.PERMISSION_DENIED);
    expect(codes(await f.answer(4))).toBe(Status.INVALID_ARGUMENT);
    expect((await f.answer(4)).error!.message).toMatch(/priority/);
    expect(codes(await f.answer(5))).toBe(Status.UNAUTHENTICATED);
    expect(codes(await f.answer(6))).toEqual([0]);
    expect(codes(await f.answer(7))).toBe(Status.INVALID_ARGUMENT);
    expect(await ready("FW", "t1")).toBe(2);
    expect(await ready("FW", "t2")).toBe(2);
    f.close();
    expect(await f.done).toBe("ended");
  });

  it("tells the router when it drains, and answers every call sent before the half-close", async () => {
    const f = new Forwarder(fx.worker.port);
    // more than the stream takes in at once, still unanswered when the drain begins
    const sent = 300;
    f.send(1, "t1", [{ command: "DRAIN" }]);
    await f.answer(1); // the stream is open
    for (let seq = 2; seq <= sent; seq++) f.send(seq, "t1", [{ command: "DRAIN" }]);
    const stopping = fx.worker.stop();
    expect(await f.done).toBe("ended");
    await stopping;
    expect(f.drainingSeen).toBe(true);
    expect(f.answers.size).toBe(sent);
    expect([...f.answers.values()].every((a) => codes(a).toString() === "0")).toBe(true);
    await fx.restart(); // stopping again is a no-op; the new worker reads the same store
    expect(await ready("DRAIN", "t1")).toBe(sent);
  });

  it("settles and leases as each call's caller, cross-tenant rights by command", async () => {
    const f = new Forwarder(fx.worker.port);
    f.send(1, "t1", [{ command: "CT" }, { command: "CT" }, { command: "CT" }]);
    expect(codes(await f.answer(1))).toEqual([0, 0, 0]);
    const leased = await fx.client("t1", "worker").lease({ commands: ["CT"], maxTasks: 3 });
    const [a, b, c] = leased.tasks.map((t) => t.leaseToken);
    const ops = { tenant: "ops", roles: "worker,cross-tenant-worker" };
    // a cross-tenant worker for other commands: the token is not its to settle
    f.call({ seq: 2, ...ops, commands: "OTHER", ack: { items: [{ leaseToken: a! }] } });
    expect((await f.answer(2)).acked?.results.map((r) => r.code)).toEqual([Status.NOT_FOUND]);
    f.call({ seq: 3, ...ops, commands: "CT", ack: { items: [{ leaseToken: a! }] } });
    expect((await f.answer(3)).acked?.results.map((r) => r.code)).toEqual([0]);
    f.call({ seq: 4, tenant: "t2", roles: "worker", ack: { items: [{ leaseToken: b! }] } });
    expect((await f.answer(4)).acked?.results.map((r) => r.code)).toEqual([Status.NOT_FOUND]);
    f.call({
      seq: 5,
      tenant: "t1",
      roles: "worker",
      extend: { items: [{ leaseToken: b!, leaseDurationMs: 60_000 }] },
    });
    expect((await f.answer(5)).extended?.results.map((r) => r.status!.code)).toEqual([0]);
    f.call({
      seq: 6,
      tenant: "t1",
      roles: "worker",
      nack: { items: [{ leaseToken: c!, deadLetter: true }] },
    });
    expect((await f.answer(6)).nacked?.results.map((r) => r.code)).toEqual([0]);
    // a lease that does not wait, as its caller's: t2 sees nothing of t1's
    f.send(10, "t1", [{ command: "CT" }]);
    await f.answer(10);
    f.call({ seq: 11, tenant: "t2", roles: "worker", lease: { commands: ["CT"], maxTasks: 5 } });
    expect((await f.answer(11)).leased?.tasks).toEqual([]);
    f.call({ seq: 12, tenant: "t1", roles: "worker", lease: { commands: ["CT"], maxTasks: 5 } });
    expect((await f.answer(12)).leased?.tasks.map((t) => t.task!.command)).toEqual(["CT"]);
    f.call({ seq: 13, tenant: "t1", roles: "worker", lease: { commands: ["CT"], waitMs: 100 } });
    expect((await f.answer(13)).error?.code).toBe(Status.INVALID_ARGUMENT);
    // a lease the router could not hand over goes back, but only by its caller
    const token = (await f.answer(12)).leased!.tasks[0]!.leaseToken;
    const release = { leaseTokens: [token] };
    f.push({ seq: 14, tenant: "t2", roles: "worker", release: rel(release) });
    await f.answer(14);
    expect((await fx.worker.engine.stats({ command: "CT", tenant: "t1" })).ready).toBe(0);
    f.push({ seq: 15, tenant: "t1", roles: "worker", release: rel(release) });
    await f.answer(15);
    expect((await fx.worker.engine.stats({ command: "CT", tenant: "t1" })).ready).toBe(1);
    f.call({ seq: 16, tenant: "t1", roles: "worker", lease: { commands: ["CT"], maxTasks: 5 } });
    expect((await f.answer(16)).leased?.tasks).toHaveLength(1);
    // a producer may not settle; a message with no call, or two, is refused
    f.call({ seq: 7, tenant: "t1", roles: "producer", ack: { items: [{ leaseToken: b! }] } });
    expect((await f.answer(7)).error?.code).toBe(Status.PERMISSION_DENIED);
    f.call({ seq: 8, tenant: "t1", roles: "worker" });
    expect((await f.answer(8)).error?.code).toBe(Status.INVALID_ARGUMENT);
    f.call({
      seq: 9,
      tenant: "t1",
      roles: "worker",
      enqueue: { tasks: [{ command: "CT" }] },
      ack: { items: [{ leaseToken: b! }] },
    });
    expect((await f.answer(9)).error?.code).toBe(Status.INVALID_ARGUMENT);
    expect(await fx.worker.engine.stats({ command: "CT", tenant: "t1" })).toMatchObject({
      ready: 0,
      leased: 2,
      dead: 1,
    });
    f.close();
  });
});

describe("Forward when the router's stream is gone", () => {
  it("gives back the leases of answers it never sent to a router that read slowly, then broke", async () => {
    const fx = await shardFixture({}, server);
    const channel = createChannel(`127.0.0.1:${fx.worker.port}`);
    try {
      const queue = { command: "SLOWR", tenant: "t1" };
      const n = 60;
      const payload = Buffer.alloc(512 * 1024, 1); // 30 MB in all: more than the transport buffers
      for (let i = 0; i < n; i += 10)
        await fx.client("t1").enqueueBatch({
          tasks: Array.from({ length: 10 }, () => ({ command: "SLOWR", payload })),
        });
      const requests = new Channel<internal.ForwardRequest>();
      const lease = LeaseRequest.encode(
        LeaseRequest.fromPartial({ commands: ["SLOWR"], maxTasks: 1, leaseDurationMs: 600_000 }),
      ).finish();
      for (let seq = 1; seq <= n; seq++)
        requests.push(
          internal.ForwardRequest.fromPartial({
            seq,
            tenant: "t1",
            principal: "w",
            roles: "worker",
            lease,
          }),
        );
      const abort = new AbortController();
      const answers = createClient(internal.ShardServiceDefinition, channel)
        .forward(requests, { signal: abort.signal })
        [Symbol.asyncIterator]();
      await answers.next(); // the router reads one answer, then nothing
      const stats = () => fx.worker.engine.stats(queue);
      await eventually(async () => (await stats()).leased === n);
      abort.abort(); // and its stream breaks
      await answers.next().catch(() => undefined);
      // the answers never sent go back at once, not when their leases expire in 10 min
      await eventually(async () => (await stats()).ready > 0, 3_000);
      const after = await stats();
      expect(after.ready + after.leased).toBe(n);
      expect(after.leased).toBeGreaterThanOrEqual(1); // the one read, at least, was sent
      requests.close();
    } finally {
      channel.close();
      await fx.close();
    }
  });

  it("gives back what a lease took for a stream that was cancelled meanwhile", async () => {
    const fx = await shardFixture({}, server);
    const engine = fx.worker.engine;
    const lease = engine.lease.bind(engine);
    try {
      await fx.client("t1").enqueue({ command: "GONE" });
      // the lease takes a while: the router crashes meanwhile
      let leased!: (n: number) => void;
      const took = new Promise<number>((r) => (leased = r));
      engine.lease = async (...args) => {
        await new Promise((r) => setTimeout(r, 500));
        const got = await lease(...args);
        leased(got.length);
        return got;
      };
      const f = new Forwarder(fx.worker.port);
      f.call({ seq: 1, tenant: "t1", roles: "worker", lease: { commands: ["GONE"], maxTasks: 1 } });
      await new Promise((r) => setTimeout(r, 100));
      f.abort.abort();
      await f.done;
      expect(await took).toBe(1); // the lease went through after the stream was gone
      // nobody got the task: ready again at once, not leased until it expires
      const stats = () => engine.stats({ command: "GONE", tenant: "t1" });
      await eventually(async () => (await stats()).ready === 1, 3_000);
      expect(await stats()).toMatchObject({ ready: 1, leased: 0 });
    } finally {
      engine.lease = lease;
      await fx.close();
    }
  });
});

describe("Forward with a router secret", () => {
  it("is refused to a caller without the secret; with it, each batch's caller is trusted", async () => {
    const fx = await shardFixture({ devIdentity: false, routerSecret: SECRET }, server);
    try {
      const stranger = new Forwarder(fx.worker.port);
      stranger.send(1, "t1", [{ command: "SEC" }]);
      const refused = await stranger.done;
      expect(refused).toBeInstanceOf(ClientError);
      expect((refused as ClientError).code).toBe(Status.UNAUTHENTICATED);

      const router = new Forwarder(fx.worker.port, SECRET);
      router.send(1, "t1", [{ command: "SEC" }]);
      expect(codes(await router.answer(1))).toEqual([0]);
      router.close();
      expect(await fx.worker.engine.stats({ command: "SEC", tenant: "t1" })).toMatchObject({
        ready: 1,
      });
    } finally {
      await fx.close();
    }
  });
});

describe("Forward and fencing", () => {
  it("answers a batch for a queue this shard does not own UNAVAILABLE, with its map version and the owner", async () => {
    const controlPrefix = `${server.keyPrefix}-fw-ctl`;
    const source = new RedisMapSource({ url: server.url, prefix: controlPrefix });
    await source.compareAndSet(
      0,
      {
        shards: {
          a: { endpoint: "127.0.0.1:1", state: "active" },
          b: { endpoint: "127.0.0.1:2", state: "active" },
        },
        defaultShard: "a",
        commands: { THEIRS: "b" },
        tenants: {},
        migrations: [],
      },
      { actor: "test", action: "test", summary: "" },
    );
    const fx = await shardFixture({ controlUrl: server.url, controlPrefix }, server);
    try {
      const f = new Forwarder(fx.worker.port);
      f.send(1, "t1", [{ command: "THEIRS" }], "producer", 1);
      f.send(2, "t1", [{ command: "MINE" }], "producer", 1);
      const fenced = await f.answer(1);
      expect(fenced.error?.code).toBe(Status.UNAVAILABLE);
      expect([fenced.mapVersion, fenced.owner]).toEqual([1, "b"]);
      expect(codes(await f.answer(2))).toEqual([0]);
      expect(await fx.worker.engine.stats({ command: "THEIRS", tenant: "t1" })).toMatchObject({
        ready: 0,
      });
      f.close();
    } finally {
      await fx.close();
      await source.close();
    }
  });
});
