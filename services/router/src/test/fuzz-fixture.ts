import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import fc from "fast-check";
import {
  ClientError,
  createChannel,
  createClient,
  Status,
  type CallOptions,
  type Channel,
} from "nice-grpc";
import {
  AdminServiceDefinition,
  QueueServiceDefinition,
  type AdminServiceClient,
  type QueueCounts,
  type QueueServiceClient,
} from "@codeq/proto";
import { RedisServer } from "@codeq/testing";
import type { RouterConfig } from "../config";
import { routerCluster, type RouterCluster } from "./cluster";
import { expectClear } from "./fuzz-expect";
import type { TokenMaterial } from "./fuzz-inputs";
import {
  admin,
  BUDGET,
  CALL_MS,
  fresh,
  JWT_SECRET,
  opts,
  PROBES,
  RUNS,
  SHARD_SECRET,
  TOKENS_YAML,
  victim,
  type Caller,
} from "./fuzz-settings";
import {
  expectNoStrayKeys,
  expectVictimUntouched,
  scan,
  seed,
  snapshot,
  victimView,
  type Baseline,
  type Seeded,
} from "./fuzz-victim";

/**
 * Issue 7, item 5: bad input never hurts. The fuzz tests of the router
 * (fuzz-*.int.test.ts) feed every QueueService and AdminService RPC hostile input
 * (names that would break the key layout, forged and truncated lease tokens,
 * out-of-range numbers, oversized payloads, raw protobuf no typed client would send)
 * by another tenant, by no-one and by an admin. Each call must answer within its
 * deadline, with success only on the caller's own data or a clear refusal; afterwards
 * every process still serves and the victim's stored tasks, and the keys they live in,
 * are exactly as before. This is the cluster each test file starts for that.
 */

export type Outcome<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly code: number; readonly message: string };

/** One test file's cluster, behind a router that checks credentials, with the victim's tasks. */
export class FuzzCluster {
  server!: RedisServer;
  rc!: RouterCluster;
  /** The router's credential settings, for a cluster of a test's own. */
  routerOptions!: Partial<RouterConfig>;
  redis!: ReturnType<RedisServer["client"]>;
  channel!: Channel;
  /** Clients without identity: every call states its own metadata. */
  q!: QueueServiceClient;
  a!: AdminServiceClient;
  /** The cluster's key prefix (its shards use `<cp>-<shard>`, its control store `<cp>:ctl:`). */
  cp!: string;
  seeded!: Seeded;
  baseline!: Baseline;
  /** Set once the last test settles the victim's leases itself. */
  victimSettled = false;
  private dir?: string;

  async start(): Promise<void> {
    this.server = await RedisServer.start();
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), "codeq-fuzz-"));
    const tokensFile = path.join(this.dir, "tokens.yaml");
    fs.writeFileSync(tokensFile, TOKENS_YAML);
    const secretFile = path.join(this.dir, "jwt.secret");
    fs.writeFileSync(secretFile, JWT_SECRET);
    this.routerOptions = {
      devIdentity: false,
      shardSecret: SHARD_SECRET,
      authTokensFile: tokensFile,
      jwtHs256SecretFile: secretFile,
    };
    this.rc = await routerCluster({
      server: this.server,
      commands: { VB: "b", PB: "b", HB: "b" },
      shard: { devIdentity: false, routerSecret: SHARD_SECRET },
      router: this.routerOptions,
    });
    this.redis = this.server.client();
    this.connect();
    this.seeded = await seed(this);
    const all = await scan(this, `${this.server.keyPrefix}*`);
    const mapKey = all.find((k) => k.endsWith(":ctl:shardmap"));
    this.cp = mapKey!.slice(0, -":ctl:shardmap".length);
    this.baseline = {
      snapshot: await snapshot(this),
      view: await victimView(this),
      keys: new Set(all),
    };
  }

  async stop(): Promise<void> {
    this.channel?.close();
    this.redis?.disconnect();
    await this.rc?.close();
    await this.server?.stop();
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * A connection of the test's own: grpc-js shares one connection per address between
   * channels, and a call that never got its answer can leave that connection stuck.
   */
  connect(): void {
    this.channel?.close();
    this.channel = createChannel(`127.0.0.1:${this.rc.router.port}`, undefined, {
      "grpc.use_local_subchannel_pool": 1,
    });
    this.q = createClient(QueueServiceDefinition, this.channel);
    this.a = createClient(AdminServiceDefinition, this.channel);
  }

  /** Runs a call under a deadline; a call without an answer in time fails the property. */
  async answer<T>(what: string, call: (signal: AbortSignal) => Promise<T>): Promise<Outcome<T>> {
    const signal = AbortSignal.timeout(CALL_MS);
    const used = this.channel;
    try {
      return { ok: true, value: await call(signal) };
    } catch (err) {
      if (signal.aborted) {
        if (this.channel === used) this.connect();
        throw new Error(`${what}: no answer within ${CALL_MS} ms`);
      }
      if (!(err instanceof ClientError)) throw err;
      return { ok: false, code: err.code, message: err.details };
    }
  }

  /** What the forged tokens are made of. */
  material(): TokenMaterial {
    return {
      foreign: this.seeded.victimTokens,
      own: this.seeded.attackerTokens,
      tasks: this.seeded.tasks,
    };
  }

  /** Tasks the tenant holds in a queue, over every shard (the engine's own count). */
  async heldBy(tenant: string, command: string): Promise<number> {
    let n = 0;
    for (const worker of this.rc.workers.values())
      n += sum(await worker.engine.stats({ command, tenant }));
    return n;
  }
}

/**
 * Starts a cluster for this test file, and after every test checks that the victim's
 * tasks and keys are as they were and that no stray key appeared.
 */
export function fuzzCluster(): FuzzCluster {
  const fx = new FuzzCluster();
  beforeAll(() => fx.start(), 30_000);
  afterAll(() => fx.stop());
  // a property cut short by its time budget may leave a call hanging on the connection
  beforeEach(() => fx.connect());
  afterEach(async () => {
    if (!fx.victimSettled) await expectVictimUntouched(fx);
    await expectNoStrayKeys(fx);
  });
  return fx;
}

export const sum = (c: Omit<QueueCounts, "readyByPriority"> | undefined) =>
  c ? c.ready + c.scheduled + c.leased + c.dead + c.completed : 0;

export async function* each<T>(items: readonly T[]): AsyncGenerator<T> {
  for (const item of items) yield item;
}

export async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of stream) out.push(x);
  return out;
}

/** An RPC under fuzzing: how to send one, what hostile input looks like, what a success may contain. */
export interface Rpc<Req, Res> {
  /** Who sends it. */
  readonly callers: readonly Caller[];
  readonly request: fc.Arbitrary<Req>;
  readonly call: (req: Req, o: CallOptions) => Promise<Res>;
  /** Checks a successful answer: the caller's own data only. */
  readonly check: (res: Res, req: Req, who: Caller) => void | Promise<void>;
  /** Inputs always tried first. */
  readonly examples?: readonly [Caller, Req][];
}
export type AnyRpc = Rpc<unknown, unknown>;
export const rpc = <Req, Res>(r: Rpc<Req, Res>) => r as unknown as AnyRpc;

/** Every answer of the RPC to its hostile input is a clear refusal or passes its check. */
export async function fuzz(fx: FuzzCluster, name: string, r: AnyRpc): Promise<void> {
  const examples = (r.examples ?? []).map(([who, req]) => [who, req] as [Caller, unknown]);
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...r.callers), r.request, async (who, req) => {
      const out = await fx.answer(name, (signal) => r.call(req, opts(who, signal)));
      if (out.ok) await r.check(out.value, req, who);
      else expectClear(name, out.code, out.message);
    }),
    { numRuns: RUNS, examples, ...BUDGET },
  );
}

/** The file's last test: every process serves, and the victim's leases still settle. */
export function testAfterwards(fx: FuzzCluster): void {
  /** Runs one step of the final checks under the call deadline; its answer or why it failed. */
  async function step<T>(
    what: string,
    call: (o: CallOptions) => Promise<T>,
    who: Caller,
  ): Promise<T> {
    const out = await fx.answer(what, (signal) => call(opts(who, signal)));
    if (!out.ok) throw new Error(`${what}: ${Status[out.code]}: ${out.message.slice(0, 300)}`);
    return out.value;
  }

  test("afterwards every process serves, and the victim's leases still settle with its tokens", async () => {
    const { rc, q, a } = fx;
    for (const state of [
      rc.router.grpc.lifecycle.state,
      ...[...rc.workers.values()].map((w) => w.grpc.lifecycle.state),
    ])
      expect(state).toBe("serving");
    // a fresh tenant's round trip through each shard
    for (const command of [PROBES.a[1]!, PROBES.b[1]!]) {
      const { taskId } = await step("enqueue", (o) => q.enqueue({ command }, o), fresh);
      const got = await step("lease", (o) => q.lease({ commands: [command] }, o), fresh);
      expect(got.tasks.map((t) => t.task!.id)).toEqual([taskId]);
      const items = [{ leaseToken: got.tasks[0]!.leaseToken }];
      const acked = await step("ack", (o) => q.ack({ items }, o), fresh);
      expect(acked.results[0]!.code).toBe(Status.OK);
    }
    const { shards } = await step("ListShards", (o) => a.listShards({}, o), admin);
    for (const id of ["a", "b"])
      expect(shards.find((s) => s.shard?.id === id)).toMatchObject({ healthy: true });
    await expectVictimUntouched(fx);
    expect(await victimView(fx)).toEqual(fx.baseline.view);
    fx.victimSettled = true;
    for (const leaseToken of fx.seeded.victimTokens) {
      const items = [{ leaseToken }];
      const ext = await step("extend", (o) => q.extend({ items }, o), victim);
      expect(ext.results[0]!.status!.code).toBe(Status.OK);
      const ack = await step("ack", (o) => q.ack({ items }, o), victim);
      expect(ack.results[0]!.code).toBe(Status.OK);
    }
  }, 60_000);
}
