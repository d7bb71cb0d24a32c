import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import fc from "fast-check";
import { SignJWT } from "jose";
import {
  ClientError,
  createChannel,
  createClient,
  Metadata,
  Status,
  type CallOptions,
  type Channel,
} from "nice-grpc";
import { decodeLeaseToken, NAME_PATTERN, SHARD_ID_PATTERN, TASK_ID_PATTERN } from "@codeq/engine";
import {
  AdminServiceDefinition,
  QueueServiceDefinition,
  type AdminServiceClient,
  type EnqueueRequest,
  type ItemStatus,
  type LeaseStreamRequest,
  type LeaseStreamResponse,
  type QueueCounts,
  type QueueServiceClient,
  type ShardState,
  type Task,
} from "@codeq/proto";
import { RedisServer } from "@codeq/testing";
import type { RouterConfig } from "./config";
import { routerCluster, type RouterCluster } from "./test/cluster";
import * as I from "./test/fuzz-inputs";

/**
 * Issue 7, item 5: bad input never hurts. Every QueueService and AdminService RPC of
 * the router is fed hostile input (names that would break the key layout, forged and
 * truncated lease tokens, out-of-range numbers, oversized payloads, raw protobuf no
 * typed client would send) by another tenant, by no-one and by an admin. Each call
 * must answer within its deadline, with success only on the caller's own data or a
 * clear refusal; afterwards every process still serves and the victim's stored tasks,
 * and the keys they live in, are exactly as before.
 */

const SHARD_SECRET = "router-to-shard-secret-0123456789abcdef";
const JWT_SECRET = "jwt-hs256-secret-0123456789abcdef0123456789";
const TOKENS = {
  victim: "tok-victim-0123456789abcdef",
  attacker: "tok-attacker-0123456789abcd",
  /** The attacker's admin right over its own tenant gets the dead-letter RPCs past the role check. */
  attackerAdmin: "tok-attacker-admin-0123456789",
  admin: "tok-admin-0123456789abcdef",
  fresh: "tok-fresh-0123456789abcdefg",
};
/** Tenants whose queues the fuzzing may legitimately create. */
const FUZZ_TENANTS = new Set(["attacker", "fresh", "jwtfuzz"]);
/** The victim's queues: VQ on shard a (the default), VB on shard b. */
const VICTIM_COMMANDS = ["VQ", "VB"];
const SHARD_OF: Record<string, string> = { VQ: "a", VB: "b" };
/** Another tenant's probes after a burst (PQ, PB) and round trips at the end (HQ, HB), per shard. */
const PROBES = { a: ["PQ", "HQ"], b: ["PB", "HB"] };
/** Commands the admin fuzzing must not move: the victim's, the attacker's seeded ones, the probes. */
const KEEP = new Set([...VICTIM_COMMANDS, "AQ", ...PROBES.a, ...PROBES.b]);
const CALL_MS = 10_000;
/** Inputs per RPC; CODEQ_FUZZ_RUNS asks for more, CODEQ_FUZZ_SEED replays a reported seed. */
const RUNS = Number(process.env.CODEQ_FUZZ_RUNS ?? 40);
const RAW_RUNS = Math.ceil(RUNS * 0.6);
if (process.env.CODEQ_FUZZ_SEED) fc.configureGlobal({ seed: Number(process.env.CODEQ_FUZZ_SEED) });
/** A budget per property, so a slow failure (a hang) cannot shrink for minutes. */
const BUDGET = { interruptAfterTimeLimit: 15_000 };
const TWELVE_HOURS = 43_200_000;

/** Refusals that tell the caller what is wrong with its request. */
const CLEAR = new Set<number>([
  Status.INVALID_ARGUMENT,
  Status.NOT_FOUND,
  Status.FAILED_PRECONDITION,
  Status.PERMISSION_DENIED,
  Status.UNAUTHENTICATED,
  Status.RESOURCE_EXHAUSTED,
  Status.OUT_OF_RANGE,
  Status.ABORTED,
  Status.ALREADY_EXISTS,
]);

interface Caller {
  readonly tenant: string;
  readonly admin: boolean;
  readonly metadata: Metadata;
  readonly [fc.toStringMethod]: () => string;
}
const caller = (tenant: string, token: string, admin = false): Caller => ({
  tenant,
  admin,
  metadata: new Metadata({ authorization: `Bearer ${token}` }),
  [fc.toStringMethod]: () => `${tenant}${admin ? " (admin)" : ""}`,
});
const victim = caller("victim", TOKENS.victim);
const attacker = caller("attacker", TOKENS.attacker);
const attackerAdmin = caller("attacker", TOKENS.attackerAdmin, true);
const admin = caller("ops", TOKENS.admin, true);
const fresh = caller("fresh", TOKENS.fresh);

let server: RedisServer;
let rc: RouterCluster;
let routerOptions: Partial<RouterConfig>;
let dir: string;
let redis: ReturnType<RedisServer["client"]>;
let channel: Channel;
/** Clients without identity: every call states its own metadata. */
let q: QueueServiceClient;
let a: AdminServiceClient;
/** The cluster's key prefix (its shards use `<cp>-<shard>`, its control store `<cp>:ctl:`). */
let cp: string;

/** What the victim stored, and the real tokens the fuzzing forges from. */
interface Seeded {
  readonly tasks: { command: string; id: string }[];
  readonly deadIds: string[];
  readonly victimTokens: string[];
  readonly attackerTokens: string[];
}
let seeded: Seeded;
let baseline: {
  snapshot: Snapshot;
  view: Record<string, Task | undefined>;
  keys: Set<string>;
};

/**
 * A connection of the test's own: grpc-js shares one connection per address between
 * channels, and a call that never got its answer can leave that connection stuck.
 */
function connect(): void {
  channel?.close();
  channel = createChannel(`127.0.0.1:${rc.router.port}`, undefined, {
    "grpc.use_local_subchannel_pool": 1,
  });
  q = createClient(QueueServiceDefinition, channel);
  a = createClient(AdminServiceDefinition, channel);
}

const opts = (who: Caller, signal?: AbortSignal): CallOptions => ({
  metadata: who.metadata,
  ...(signal ? { signal } : {}),
});

beforeAll(async () => {
  server = await RedisServer.start();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "codeq-fuzz-"));
  const tokensFile = path.join(dir, "tokens.yaml");
  fs.writeFileSync(
    tokensFile,
    [
      "tokens:",
      `  - { token: ${TOKENS.victim}, tenant: victim, roles: [producer, worker] }`,
      `  - { token: ${TOKENS.attacker}, tenant: attacker, roles: [producer, worker] }`,
      `  - { token: ${TOKENS.attackerAdmin}, tenant: attacker, roles: [admin] }`,
      `  - { token: ${TOKENS.admin}, tenant: ops, roles: [admin] }`,
      `  - { token: ${TOKENS.fresh}, tenant: fresh, roles: [producer, worker] }`,
    ].join("\n"),
  );
  const secretFile = path.join(dir, "jwt.secret");
  fs.writeFileSync(secretFile, JWT_SECRET);
  routerOptions = {
    devIdentity: false,
    shardSecret: SHARD_SECRET,
    authTokensFile: tokensFile,
    jwtHs256SecretFile: secretFile,
  };
  rc = await routerCluster({
    server,
    commands: { VB: "b", PB: "b", HB: "b" },
    shard: { devIdentity: false, routerSecret: SHARD_SECRET },
    router: routerOptions,
  });
  redis = server.client();
  connect();
  seeded = await seed();
  const all = await scan(`${server.keyPrefix}*`);
  const mapKey = all.find((k) => k.endsWith(":ctl:shardmap"));
  cp = mapKey!.slice(0, -":ctl:shardmap".length);
  baseline = { snapshot: await snapshot(), view: await victimView(), keys: new Set(all) };
}, 30_000);

afterAll(async () => {
  channel?.close();
  redis?.disconnect();
  await rc?.close();
  await server?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

// a property cut short by its time budget may leave a call hanging on the connection
beforeEach(() => connect());

/** Set once the last test settles the victim's leases itself. */
let victimSettled = false;

/** Whatever the test did, the victim's tasks and keys are as they were and no stray key appeared. */
afterEach(async () => {
  if (!victimSettled) await expectVictimUntouched();
  await expectNoStrayKeys();
});

// ---------------------------------------------------------------------------------------
// The victim's tasks, and the attacker's own leases

async function seed(): Promise<Seeded> {
  const tasks: Seeded["tasks"] = [];
  const deadIds: string[] = [];
  const victimTokens: string[] = [];
  const v = (command: string, extra: Partial<EnqueueRequest> = {}) =>
    q
      .enqueue({ command, payload: Buffer.from(`victim ${command}`), ...extra }, opts(victim))
      .then(({ taskId }) => (tasks.push({ command, id: taskId }), taskId));
  const leaseOne = async (command: string) => {
    const got = await q.lease(
      { commands: [command], maxTasks: 1, leaseDurationMs: TWELVE_HOURS },
      opts(victim),
    );
    return got.tasks[0]!.leaseToken;
  };
  for (const command of VICTIM_COMMANDS) {
    // one task at a time is ready while it is leased, so each lease takes the one meant
    deadIds.push(await v(command, { maxAttempts: 1 }));
    const dying = await leaseOne(command);
    await q.nack(
      { items: [{ leaseToken: dying, deadLetter: true, error: "poison" }] },
      opts(victim),
    );
    await v(command);
    await q.ack(
      { items: [{ leaseToken: await leaseOne(command), result: Buffer.from("done") }] },
      opts(victim),
    );
    await v(command, { priority: 5, idempotencyKey: `held-${command}`, headers: { trace: "t1" } });
    victimTokens.push(await leaseOne(command));
    for (const priority of [0, 4, 9]) await v(command, { priority });
    await v(command, { delayMs: 3_600_000, idempotencyKey: `later-${command}` });
  }
  // the attacker's own leases: settling these may succeed
  for (let i = 0; i < 4; i++) await q.enqueue({ command: "AQ" }, opts(attacker));
  const own = await q.lease(
    { commands: ["AQ"], maxTasks: 4, leaseDurationMs: TWELVE_HOURS },
    opts(attacker),
  );
  return { tasks, deadIds, victimTokens, attackerTokens: own.tasks.map((t) => t.leaseToken) };
}

const material = (): I.TokenMaterial => ({
  foreign: seeded.victimTokens,
  own: seeded.attackerTokens,
  tasks: seeded.tasks,
});

// ---------------------------------------------------------------------------------------
// Snapshots: the victim's tasks as stored, its counts, and its keys byte for byte

interface Snapshot {
  /** The victim's tasks as its shards store them (read beside the router, whatever its state). */
  readonly tasks: Record<string, unknown>;
  readonly counts: Record<string, unknown>;
  readonly keys: Record<string, unknown>;
}

async function scan(match: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = "0";
  do {
    const [next, batch] = await redis.scan(cursor, "MATCH", match, "COUNT", 1000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== "0");
  return keys.sort();
}

/** `<shard prefix>:q:{<command>:<tenant>:s:<shard>}:<type>`: the parts of a queue key. */
const QUEUE_KEY = /^(.*)-([a-z0-9-]+):q:\{([^{}]*?):([^{}:]*):s:([^{}]*)\}:(.*)$/s;
const QUEUE_TYPES =
  /^(tasks|state|payloads|results|ready:[0-9]|scheduled|leased|dead|completed|moving|idemidx|idem:.+)$/s;

async function dump(key: string): Promise<unknown> {
  const type = await redis.type(key);
  switch (type) {
    case "hash":
      return { type, value: await redis.hgetallBuffer(key) };
    case "list":
      return { type, value: await redis.lrangeBuffer(key, 0, -1) };
    case "zset":
      return { type, value: await redis.zrange(key, "0", "-1", "WITHSCORES") };
    case "set":
      return { type, value: (await redis.smembers(key)).sort() };
    default:
      return { type, value: await redis.getBuffer(key) };
  }
}

async function snapshot(): Promise<Snapshot> {
  const tasks: Snapshot["tasks"] = {};
  for (const { command, id } of seeded.tasks)
    tasks[id] = await rc.workers
      .get(SHARD_OF[command]!)!
      .engine.getTask({ command, tenant: "victim" }, id);
  const counts: Snapshot["counts"] = {};
  for (const [shard, worker] of rc.workers)
    for (const command of VICTIM_COMMANDS)
      counts[`${shard}/${command}`] = await worker.engine.stats({ command, tenant: "victim" });
  const keys: Snapshot["keys"] = {};
  for (const key of await scan(`${cp}*victim*`)) {
    const m = QUEUE_KEY.exec(key);
    if (m?.[4] === "victim") keys[key] = await dump(key);
  }
  for (const shard of rc.workers.keys()) {
    const base = `${cp}-${shard}:s:${shard}`;
    for (const command of VICTIM_COMMANDS) {
      keys[`${base}:queues ∋ ${command}:victim`] = await redis.sismember(
        `${base}:queues`,
        `${command}:victim`,
      );
    }
  }
  return { tasks, counts, keys };
}

/** The victim's tasks as it reads them through the router. */
async function victimView(): Promise<Record<string, Task | undefined>> {
  const view: Record<string, Task | undefined> = {};
  for (const { command, id } of seeded.tasks)
    view[id] = (await q.getTask({ command, taskId: id }, opts(victim))).task;
  return view;
}

async function expectVictimUntouched(): Promise<void> {
  const now = await snapshot();
  expect(now.tasks).toEqual(baseline.snapshot.tasks);
  expect(now.counts).toEqual(baseline.snapshot.counts);
  expect(now.keys).toEqual(baseline.snapshot.keys);
}

/**
 * Every key is one that existed before the fuzzing, or a key of the layout for a
 * queue with valid names of a tenant the fuzzing acts as, or the control store's;
 * shard registries name only valid queues.
 */
async function expectNoStrayKeys(): Promise<void> {
  const stray: string[] = [];
  for (const key of await scan(`${cp}*`)) {
    if (baseline.keys.has(key)) continue;
    if (key.startsWith(`${cp}:ctl:`) && /^[A-Za-z0-9:_.-]+$/.test(key)) continue;
    const m = QUEUE_KEY.exec(key);
    const ok =
      m !== null &&
      m[1] === cp &&
      m[2] === m[5] &&
      rc.workers.has(m[2]!) &&
      NAME_PATTERN.test(m[3]!) &&
      FUZZ_TENANTS.has(m[4]!) &&
      QUEUE_TYPES.test(m[6]!);
    if (!ok) stray.push(key.slice(0, 200));
  }
  for (const shard of rc.workers.keys()) {
    const base = `${cp}-${shard}:s:${shard}`;
    const members = [
      ...(await redis.smembers(`${base}:queues`)),
      ...(await redis.zrange(`${base}:due`, "0", "-1")),
    ];
    for (const id of members)
      if (!/^[A-Za-z0-9_.-]{1,128}:[A-Za-z0-9_.-]{1,128}$/.test(id))
        stray.push(`member of ${base}: ${id.slice(0, 200)}`);
  }
  expect(stray).toEqual([]);
}

// ---------------------------------------------------------------------------------------
// What every answer must be

type Outcome<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly code: number; readonly message: string };

/** Runs a call under a deadline; a call without an answer in time fails the property. */
async function answer<T>(
  what: string,
  call: (signal: AbortSignal) => Promise<T>,
): Promise<Outcome<T>> {
  const signal = AbortSignal.timeout(CALL_MS);
  const used = channel;
  try {
    return { ok: true, value: await call(signal) };
  } catch (err) {
    if (signal.aborted) {
      if (channel === used) connect();
      throw new Error(`${what}: no answer within ${CALL_MS} ms`);
    }
    if (!(err instanceof ClientError)) throw err;
    return { ok: false, code: err.code, message: err.details };
  }
}

/** A refusal that tells the caller what is wrong, briefly, without repeating a huge input. */
function expectClear(what: string, code: number, message: string): void {
  if (!CLEAR.has(code))
    throw new Error(`${what}: ${Status[code]} is not a clear refusal: ${message.slice(0, 300)}`);
  if (message.length === 0) throw new Error(`${what}: ${Status[code]} without a message`);
  if (message.length >= 1000)
    throw new Error(`${what}: a ${message.length}-character message: ${message.slice(0, 200)}…`);
}

function expectItem(what: string, s: ItemStatus | undefined): void {
  if (!s) throw new Error(`${what}: no status`);
  if (s.code !== Status.OK) expectClear(what, s.code, s.message);
}

/**
 * A settlement may succeed only with the caller's own token; another tenant's token,
 * or a malformed one, is NOT_FOUND, exactly like an unknown one.
 */
function expectSettlement(
  what: string,
  token: string,
  s: ItemStatus | undefined,
  who: Caller,
  oversized = false,
): void {
  expectItem(what, s);
  const own = decodeLeaseToken(token)?.tenant === who.tenant;
  if (s!.code === Status.OK) {
    if (!own)
      throw new Error(`${what}: settled a token that is not the caller's: ${token.slice(0, 120)}`);
    if (oversized) throw new Error(`${what}: accepted an ack result over the 1 MiB cap`);
  } else if (!own && s!.code !== Status.NOT_FOUND) {
    throw new Error(`${what}: a foreign or malformed token got ${Status[s!.code]}, not NOT_FOUND`);
  }
}

/** Every task in an answer is the caller's; every item status in it is OK or clear. */
function expectOwnOnly(value: unknown, tenant: string, what: string): void {
  const walk = (v: unknown, at: string): void => {
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${at}[${i}]`));
    else if (v !== null && typeof v === "object" && !(v instanceof Uint8Array)) {
      const o = v as Record<string, unknown>;
      if (typeof o.tenant === "string" && typeof o.id === "string" && o.tenant !== tenant)
        throw new Error(`${what}${at}: a task of tenant ${o.tenant} reached ${tenant}`);
      if (typeof o.code === "number" && typeof o.message === "string" && o.code !== Status.OK)
        expectClear(`${what}${at}`, o.code, o.message);
      for (const [k, x] of Object.entries(o)) walk(x, `${at}.${k}`);
    }
  };
  walk(value, "");
}

const sum = (c: Omit<QueueCounts, "readyByPriority"> | undefined) =>
  c ? c.ready + c.scheduled + c.leased + c.dead + c.completed : 0;

/** Tasks the tenant holds in a queue, over every shard (the engine's own count). */
async function heldBy(tenant: string, command: string): Promise<number> {
  let n = 0;
  for (const worker of rc.workers.values())
    n += sum(await worker.engine.stats({ command, tenant }));
  return n;
}

async function* each<T>(items: readonly T[]): AsyncGenerator<T> {
  for (const item of items) yield item;
}

async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of stream) out.push(x);
  return out;
}

// ---------------------------------------------------------------------------------------
// The RPCs: how to send one, what hostile input looks like, what a success may contain

interface Rpc<Req, Res> {
  /** Who sends it. */
  readonly callers: readonly Caller[];
  readonly request: fc.Arbitrary<Req>;
  readonly call: (req: Req, o: CallOptions) => Promise<Res>;
  /** Checks a successful answer: the caller's own data only. */
  readonly check: (res: Res, req: Req, who: Caller) => void | Promise<void>;
  /** Inputs always tried first. */
  readonly examples?: readonly [Caller, Req][];
}
type AnyRpc = Rpc<unknown, unknown>;
const rpc = <Req, Res>(r: Rpc<Req, Res>) => r as unknown as AnyRpc;

const names = () => I.hostileName(["AQ", "VQ", "VB"]);
/** An answer other than a refusal needs the admin right (ListDead, RedriveDead, PurgeDead). */
function expectAdmin(who: Caller): void {
  if (!who.admin) throw new Error(`answered a caller without the admin right (${who.tenant})`);
}

function expectValidCommand(command: string | undefined): void {
  if (!NAME_PATTERN.test(command ?? ""))
    throw new Error(`accepted the command ${JSON.stringify((command ?? "").slice(0, 60))}`);
}

function queueRpcs(): Record<string, AnyRpc> {
  const token = I.hostileToken(material());
  const victimIds = seeded.tasks.map((t) => t.id);
  const deadTrio = [attacker, attackerAdmin];
  const taskIds = (n: number) =>
    fc.oneof(
      {
        weight: 6,
        arbitrary: fc.array(
          fc.oneof(fc.constantFrom(...seeded.deadIds), fc.constantFrom(...victimIds), names()),
          { maxLength: 5 },
        ),
      },
      {
        weight: 1,
        arbitrary: fc.constant(
          Array.from({ length: n }, (_, i) => victimIds[i % victimIds.length]!),
        ),
      },
      { weight: 1, arbitrary: fc.constant(Array.from({ length: n + 1 }, () => "x")) },
    );
  const checkDead = (
    res: { notFound: string[] },
    req: { command?: string; taskIds?: string[] },
    who: Caller,
  ) => {
    expectAdmin(who);
    expectValidCommand(req.command);
    for (const id of req.taskIds ?? [])
      if (victimIds.includes(id)) expect(res.notFound).toContain(id);
  };
  return {
    Enqueue: rpc({
      callers: [attacker],
      request: I.enqueueRequest(names()),
      call: (req, o) => q.enqueue(req, o),
      check: async (res, req, who) => {
        expectValidCommand(req.command);
        expect(res.taskId).toMatch(TASK_ID_PATTERN);
        const stored = await Promise.all(
          [...rc.workers.values()].map((w) =>
            w.engine.getTask({ command: req.command!, tenant: who.tenant }, res.taskId),
          ),
        );
        expect(stored.some((t) => t !== undefined)).toBe(true);
      },
      // valid names that are also properties of every JavaScript object
      examples: [
        [attacker, { command: "__proto__" }],
        [attacker, { command: "constructor" }],
      ],
    }),
    EnqueueBatch: rpc({
      callers: [attacker],
      request: I.enqueueBatch(I.enqueueRequest(names())).map((tasks) => ({ tasks })),
      call: (req, o) => q.enqueueBatch(req, o),
      check: (res, req) => {
        expect(res.results).toHaveLength(req.tasks.length);
        res.results.forEach((r, i) => expectItem(`results[${i}]`, r.status));
      },
    }),
    EnqueueStream: rpc({
      callers: [attacker],
      request: fc
        .array(I.enqueueBatch(I.enqueueRequest(names())), { minLength: 1, maxLength: 3 })
        .map((batches) => batches.map((tasks, i) => ({ seq: i + 1, tasks }))),
      call: (reqs, o) => collect(q.enqueueStream(each(reqs), o)),
      check: (res, reqs) => {
        expect(res.map((r) => r.seq).sort()).toEqual(reqs.map((r) => r.seq));
        for (const r of res) {
          expect(r.results).toHaveLength(reqs[r.seq - 1]!.tasks.length);
          r.results.forEach((x, i) => expectItem(`seq ${r.seq} results[${i}]`, x.status));
        }
      },
    }),
    GetTask: rpc({
      callers: [attacker],
      request: fc.record({
        command: names(),
        taskId: fc.oneof(
          fc.constantFrom(...victimIds),
          fc.constantFrom(...victimIds).map((id) => id.toLowerCase()),
          names(),
          fc.constantFrom("01ARZ3NDEKTSV4RRFFQ69G5FAV", "ZZZZZZZZZZZZZZZZZZZZZZZZZZ"),
        ),
      }),
      call: (req, o) => q.getTask(req, o),
      check: (res, req, who) => {
        expect(res.task?.tenant).toBe(who.tenant);
        expect(res.task?.id).toBe(req.taskId);
      },
    }),
    QueueStats: rpc({
      callers: [attacker],
      request: fc.record({ command: names() }),
      call: (req, o) => q.queueStats(req, o),
      check: async (res, req, who) => {
        expectValidCommand(req.command);
        expect(sum(res.total)).toBe(await heldBy(who.tenant, req.command));
      },
    }),
    ListDead: rpc({
      callers: deadTrio,
      request: fc.record({
        command: names(),
        pageSize: I.u32(1000, 1001),
        pageToken: I.pageToken,
      }),
      call: (req, o) => q.listDead(req, o),
      check: (res, req, who) => {
        expectAdmin(who);
        expectValidCommand(req.command);
        expectOwnOnly(res.tasks, who.tenant, "ListDead");
      },
      // a page token naming a shard past the caller's last one
      examples: [[attacker, { command: "VQ", pageSize: 0, pageToken: b64url("r1.1.") }]],
    }),
    RedriveDead: rpc({
      callers: deadTrio,
      request: fc.record(
        {
          command: names(),
          taskIds: taskIds(1000),
          maxTasks: I.u32(1000, 1001),
          ratePerSecond: I.u32(100_000, 100_001),
        },
        { requiredKeys: ["command"] },
      ),
      call: (req, o) => q.redriveDead(req, o),
      check: checkDead,
      // ids that are not dead tasks of the caller, redriven at one a second
      examples: [
        [attackerAdmin, { command: "AQ", taskIds: victimIds.slice(0, 30), ratePerSecond: 1 }],
      ],
    }),
    PurgeDead: rpc({
      callers: deadTrio,
      request: fc.record(
        { command: names(), taskIds: taskIds(10_000), maxTasks: I.u32(10_000, 10_001) },
        { requiredKeys: ["command"] },
      ),
      call: (req, o) => q.purgeDead(req, o),
      check: checkDead,
    }),
    Ack: rpc({
      callers: [attacker],
      request: I.ackItems(token).map((items) => ({ items })),
      call: (req, o) => q.ack(req, o),
      check: (res, req, who) => {
        expect(res.results).toHaveLength(req.items.length);
        res.results.forEach((s, i) => {
          const item = req.items[i]!;
          const big = (item.result?.length ?? 0) > 1024 * 1024;
          expectSettlement(`items[${i}]`, item.leaseToken ?? "", s, who, big);
        });
      },
      examples: [
        [
          attacker,
          {
            items: [
              { leaseToken: seeded.attackerTokens[0]!, result: new Uint8Array(1024 * 1024 + 1) },
            ],
          },
        ],
      ],
    }),
    Nack: rpc({
      callers: [attacker],
      request: I.nackItems(token).map((items) => ({ items })),
      call: (req, o) => q.nack(req, o),
      check: (res, req, who) => {
        expect(res.results).toHaveLength(req.items.length);
        res.results.forEach((s, i) =>
          expectSettlement(`items[${i}]`, req.items[i]!.leaseToken ?? "", s, who),
        );
      },
    }),
    Extend: rpc({
      callers: [attacker],
      request: I.extendItems(token).map((items) => ({ items })),
      call: (req, o) => q.extend(req, o),
      check: (res, req, who) => {
        expect(res.results).toHaveLength(req.items.length);
        res.results.forEach((r, i) =>
          expectSettlement(`items[${i}]`, req.items[i]!.leaseToken ?? "", r.status, who),
        );
      },
    }),
    Lease: rpc({
      callers: [attacker],
      request: fc.record(
        {
          commands: I.commandList(names()),
          maxTasks: I.u32(1000, 1001),
          // valid waits stay short: a long poll on an empty queue is no hang
          waitMs: fc.constantFrom(0, 1, 20, 30_001, 2 ** 31, 2 ** 32 - 1),
          leaseDurationMs: I.u32(999, 1000, TWELVE_HOURS, TWELVE_HOURS + 1),
          allTenants: fc.boolean(),
        },
        { requiredKeys: ["commands"] },
      ),
      call: (req, o) => q.lease(req, o),
      check: (res, req, who) => {
        expect(req.allTenants ?? false).toBe(false);
        expect(res.tasks.length).toBeLessThanOrEqual(Math.max(1, req.maxTasks ?? 0));
        expectOwnOnly(res.tasks, who.tenant, "Lease");
      },
      examples: [[attacker, { commands: ["AQ"], waitMs: 2 ** 31 }]],
    }),
    LeaseStream: rpc({
      callers: [attacker],
      request: leaseScript(names(), token),
      call: converse,
      check: (res, script, who) => {
        expect(res.filter((r) => r.subscribed).length).toBeLessThanOrEqual(1);
        const pushed = res.flatMap((r) => r.tasks?.tasks ?? []);
        expectOwnOnly(pushed, who.tenant, "LeaseStream");
        expect(pushed.length).toBeLessThanOrEqual(script.reduce((n, m) => n + (m.credits ?? 0), 0));
        for (const r of res) {
          if (!r.settled) continue;
          const sent = script[r.settled.requestId - 1]!;
          const { acks, nacks, extends: ext } = r.settled;
          acks.forEach((s, i) =>
            expectSettlement(`acks[${i}]`, sent.acks![i]!.leaseToken!, s, who),
          );
          nacks.forEach((s, i) =>
            expectSettlement(`nacks[${i}]`, sent.nacks![i]!.leaseToken!, s, who),
          );
          ext.forEach((x, i) =>
            expectSettlement(`extends[${i}]`, sent.extends![i]!.leaseToken!, x.status, who),
          );
        }
      },
    }),
  };
}

/**
 * Sends a LeaseStream script message by message; after one with settlements, waits for
 * their answer (every such message is answered) before the next, and half-closes last.
 */
async function converse(
  script: readonly Partial<LeaseStreamRequest>[],
  o: CallOptions,
): Promise<LeaseStreamResponse[]> {
  const out: LeaseStreamResponse[] = [];
  const waiting = new Map<number, () => void>();
  let ended = false;
  async function* requests() {
    for (const m of script) {
      yield m;
      const settles = (m.acks?.length ?? 0) + (m.nacks?.length ?? 0) + (m.extends?.length ?? 0);
      if (settles > 0 && !ended)
        await new Promise<void>((resolve) => waiting.set(m.requestId!, resolve));
    }
  }
  try {
    for await (const res of q.leaseStream(requests(), o)) {
      out.push(res);
      if (res.settled) waiting.get(res.settled.requestId)?.();
    }
  } finally {
    ended = true;
    for (const resolve of waiting.values()) resolve();
  }
  return out;
}

/** A LeaseStream conversation: a first message (mostly with subscribe), then a few more. */
function leaseScript(names: fc.Arbitrary<string>, token: fc.Arbitrary<string>) {
  const rest = fc.record(
    {
      subscribe: fc.oneof(
        { weight: 5, arbitrary: fc.constant(undefined) },
        { weight: 1, arbitrary: I.subscription(names) },
      ),
      credits: I.u32(10_000, 10_001),
      acks: I.ackItems(token),
      nacks: I.nackItems(token),
      extends: I.extendItems(token),
    },
    { requiredKeys: [] },
  );
  const first = fc.record(
    {
      subscribe: fc.option(I.subscription(names), { nil: undefined, freq: 5 }),
      credits: I.u32(10_000),
    },
    { requiredKeys: [] },
  );
  return fc
    .tuple(first, fc.array(rest, { maxLength: 3 }))
    .map(([head, tail]) => [head, ...tail].map((m, i) => ({ ...m, requestId: i + 1 })))
    .map((script) => script as Partial<LeaseStreamRequest>[]);
}

/** A 100 KB name: an answer that repeats it no longer fits in an HTTP/2 header block. */
const HUGE = "x".repeat(100_000);
const b64url = (s: string) => Buffer.from(s, "utf8").toString("base64url");

/** Shards the RegisterShard fuzzing added (removing one of them may succeed). */
const registered = new Set<string>();

function adminRpcs(): Record<string, AnyRpc> {
  const unkept = I.hostileName().filter((c) => !KEEP.has(c));
  const shardId = fc.oneof(fc.constantFrom("a", "b", "c", "zz-1"), I.hostileName());
  return {
    AssignCommand: rpc({
      callers: [admin],
      request: fc.record(
        {
          command: unkept,
          tenant: fc.oneof(fc.constantFrom("", "victim", "attacker"), I.hostileName()),
          shard: shardId,
          dryRun: fc.boolean(),
          expectedVersion: fc.oneof(fc.constantFrom(0, 1, Number.MAX_SAFE_INTEGER), fc.nat()),
        },
        { requiredKeys: ["command"] },
      ),
      call: (req, o) => a.assignCommand(req, o),
      check: (res, req) => {
        expectValidCommand(req.command);
        if (req.tenant) expect(req.tenant).toMatch(NAME_PATTERN);
        expect(req.shard === "a" || req.shard === "b").toBe(true);
      },
      examples: [[admin, { command: "ZZ", shard: HUGE }]],
    }),
    GetMigration: rpc({
      callers: [admin],
      request: fc.record({ id: I.hostileName() }),
      call: (req, o) => a.getMigration(req, o),
      check: (res, req) => expect(res.migration?.id).toBe(req.id),
      examples: [[admin, { id: HUGE }]],
    }),
    ListMigrations: rpc({
      callers: [admin],
      request: fc.record(
        {
          includeFinished: fc.boolean(),
          command: I.hostileName(),
          pageSize: I.u32(1000, 1001),
          pageToken: I.pageToken,
        },
        { requiredKeys: [] },
      ),
      call: (req, o) => a.listMigrations(req, o),
      check: (res, req) => {
        expect(res.migrations.length).toBeLessThanOrEqual(req.pageSize || 100);
        expect(res.nextPageToken.length).toBeLessThan(1000);
      },
    }),
    AbortMigration: rpc({
      callers: [admin],
      request: fc.record({ id: I.hostileName() }),
      call: (req, o) => a.abortMigration(req, o),
      check: (res, req) => expect(res.migration?.id).toBe(req.id),
      examples: [[admin, { id: HUGE }]],
    }),
    RegisterShard: rpc({
      callers: [admin],
      request: fc.record(
        {
          shard: fc.option(
            fc.record(
              {
                id: shardId,
                endpoint: fc.oneof(
                  fc.constantFrom("127.0.0.1:1", "127.0.0.1:0", "127.0.0.1:65536", ":1", "h:"),
                  fc.constantFrom("[::1]:1", "a b:1", "127.0.0.1:1\n", "x".repeat(100_000)),
                  I.hostileName(),
                ),
                state: fc.constantFrom(0, 1, 2, 3, 99).map((n) => n as ShardState),
              },
              { requiredKeys: [] },
            ),
            { nil: undefined },
          ),
        },
        { requiredKeys: [] },
      ),
      call: (req, o) => a.registerShard(req, o),
      check: (res, req) => {
        expect(req.shard?.id ?? "").toMatch(SHARD_ID_PATTERN);
        expect(req.shard?.endpoint ?? "").toMatch(/^\S+:[0-9]{1,5}$/);
        expect(["a", "b"]).not.toContain(req.shard?.id);
        registered.add(req.shard!.id!);
      },
    }),
    RemoveShard: rpc({
      callers: [admin],
      request: fc.record({ id: shardId }),
      call: (req, o) => a.removeShard(req, o),
      // a holds the default and b a mapping, so only a shard registered here may go
      check: (res, req) => {
        if (!registered.has(req.id))
          throw new Error(`removed ${JSON.stringify(req.id.slice(0, 60))}, never registered here`);
      },
      examples: [
        [admin, { id: "constructor" }],
        [admin, { id: HUGE }],
      ],
    }),
    ListAuditEvents: rpc({
      callers: [admin],
      request: fc.record(
        { pageSize: I.u32(1000, 1001), pageToken: I.pageToken },
        { requiredKeys: [] },
      ),
      call: (req, o) => a.listAuditEvents(req, o),
      check: (res, req) => expect(res.events.length).toBeLessThanOrEqual(req.pageSize || 100),
    }),
  };
}

const QUEUE_RPCS = [
  "Enqueue",
  "EnqueueBatch",
  "EnqueueStream",
  "GetTask",
  "QueueStats", // before any lease of the attacker's can expire: its counts hold still
  "ListDead",
  "RedriveDead",
  "PurgeDead",
  "Ack",
  "Nack",
  "Extend",
  "Lease",
  "LeaseStream",
];
const ADMIN_RPCS = [
  "GetMigration",
  "ListMigrations",
  "AbortMigration",
  "ListAuditEvents",
  "RegisterShard",
  "RemoveShard",
  "AssignCommand",
];

async function fuzz(name: string, r: AnyRpc): Promise<void> {
  const examples = (r.examples ?? []).map(([who, req]) => [who, req] as [Caller, unknown]);
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...r.callers), r.request, async (who, req) => {
      const out = await answer(name, (signal) => r.call(req, opts(who, signal)));
      if (out.ok) await r.check(out.value, req, who);
      else expectClear(name, out.code, out.message);
    }),
    { numRuns: RUNS, examples, ...BUDGET },
  );
}

describe("QueueService with hostile input from another tenant", () => {
  test.each(QUEUE_RPCS)(
    "%s answers clearly, with the caller's own data only",
    async (name) => {
      await fuzz(name, queueRpcs()[name]!);
    },
    60_000,
  );

  test("hostile leases do not open a shard's circuit breaker for the other tenants", async () => {
    // a cluster of its own: the breaker counts over a window shared by every caller, which
    // here holds only the attacker's calls (a failure would also spill into other tests)
    const own = await routerCluster({
      server,
      shards: ["a"],
      shard: { devIdentity: false, routerSecret: SHARD_SECRET },
      router: routerOptions,
    });
    try {
      const as = (who: Caller) =>
        own.clientWith({ authorization: who.metadata.get("authorization")! });
      const hostile = as(attacker);
      for (let i = 0; i < 10; i++)
        await answer("Lease", (signal) =>
          hostile.lease({ commands: ["AQ"], waitMs: 2 ** 31 }, { signal }),
        );
      const out = await answer("Enqueue", (signal) =>
        as(fresh).enqueue({ command: PROBES.a[0]! }, { signal }),
      );
      expect(out.ok ? "OK" : `${Status[out.code]}: ${out.message}`).toBe("OK");
    } finally {
      await own.close();
    }
  });

  test("a run of hostile calls leaves every shard serving the other tenants", async () => {
    const rpcs = queueRpcs();
    const call = fc.oneof(
      ...QUEUE_RPCS.map((name) => fc.tuple(fc.constant(name), rpcs[name]!.request)),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(call, { minLength: 5, maxLength: 20 }), async (run) => {
        // the answers are the other tests' business; here only what others see afterwards
        for (const [name, req] of run)
          await answer(name, (signal) => rpcs[name]!.call(req, opts(attacker, signal))).catch(
            () => undefined, // a hang: the RPC's own test reports it
          );
        for (const command of [PROBES.a[0]!, PROBES.b[0]!]) {
          const out = await answer(command, (signal) =>
            q.enqueue({ command }, opts(fresh, signal)),
          );
          expect(out.ok ? "OK" : `${Status[out.code]}: ${out.message}`).toBe("OK");
        }
      }),
      { numRuns: 10, ...BUDGET },
    );
  }, 60_000);
});

// ---------------------------------------------------------------------------------------
// Raw protobuf: wrong wire types, 64-bit values past 2^53, unknown fields, non-UTF-8

interface RawMethod {
  readonly service: "codeq.v1.QueueService" | "codeq.v1.AdminService";
  readonly stream: boolean;
  readonly decode: (bytes: Uint8Array) => unknown;
}
const RAW: Record<string, RawMethod> = Object.fromEntries([
  ...Object.values(QueueServiceDefinition.methods).map((m) => [
    m.name,
    {
      service: "codeq.v1.QueueService",
      stream: m.requestStream,
      decode: (b: Uint8Array) => m.responseType.decode(b),
    },
  ]),
  ...Object.values(AdminServiceDefinition.methods).map((m) => [
    m.name,
    {
      service: "codeq.v1.AdminService",
      stream: false,
      decode: (b: Uint8Array) => m.responseType.decode(b),
    },
  ]),
]);

type RawUnary = (req: Uint8Array, o: CallOptions) => Promise<Buffer>;
type RawStream = (reqs: AsyncIterable<Uint8Array>, o: CallOptions) => AsyncIterable<Buffer>;

function rawCall(name: string, messages: readonly Buffer[], o: CallOptions): Promise<Buffer[]> {
  const m = RAW[name]!;
  const client = createClient(
    I.rawService(m.service, { [name]: { requestStream: m.stream, responseStream: m.stream } }),
    channel,
  ) as unknown as Record<string, RawUnary | RawStream>;
  return m.stream
    ? collect((client[name] as RawStream)(each(messages), o))
    : (client[name] as RawUnary)(messages[0]!, o).then((b) => [b]);
}

/** Hand-written raw messages every run tries: values no typed client can send. */
const RAW_EXAMPLES: Record<string, Buffer[][]> = {
  Enqueue: [
    [Buffer.concat([I.pb.bytes(1, "AQ"), I.pb.varint(4, 2n ** 63n)])],
    [Buffer.concat([I.pb.bytes(1, "AQ"), I.pb.varint(5, -(2n ** 62n))])],
  ],
  EnqueueStream: [
    [Buffer.concat([I.pb.varint(1, 2n ** 64n - 1n), I.pb.bytes(2, I.pb.bytes(1, "AQ"))])],
  ],
  LeaseStream: [
    [
      Buffer.concat([I.pb.bytes(1, I.pb.bytes(1, "AQ")), I.pb.varint(2, 1n)]),
      Buffer.concat([I.pb.varint(3, 2n ** 63n), I.pb.bytes(4, I.pb.bytes(1, "x"))]),
    ],
  ],
  AssignCommand: [
    [
      Buffer.concat([
        I.pb.bytes(1, "ZZ"),
        I.pb.bytes(3, "b"),
        I.pb.varint(4, 1n),
        I.pb.varint(5, 2n ** 64n - 1n),
      ]),
    ],
  ],
};

describe("raw messages no typed client would send", () => {
  test.each([...QUEUE_RPCS, ...ADMIN_RPCS])(
    "%s answers well-formed protobuf clearly",
    async (name) => {
      const m = RAW[name]!;
      const who = m.service === "codeq.v1.AdminService" ? admin : attacker;
      const one = I.message(I.REQUEST_SCHEMAS[name]!);
      const messages = m.stream
        ? fc.array(one, { minLength: 1, maxLength: 3 })
        : one.map((b) => [b]);
      await fc.assert(
        fc.asyncProperty(messages, async (bytes) => {
          const out = await answer(`raw ${name}`, (signal) =>
            rawCall(name, bytes, opts(who, signal)),
          );
          if (!out.ok) return expectClear(`raw ${name}`, out.code, out.message);
          if (who === attacker)
            for (const b of out.value) expectOwnOnly(m.decode(b), who.tenant, `raw ${name}`);
        }),
        { numRuns: RAW_RUNS, examples: (RAW_EXAMPLES[name] ?? []).map((x) => [x]), ...BUDGET },
      );
    },
    60_000,
  );

  test("bytes that are no protobuf at all are refused by the gRPC library, and nothing breaks", async () => {
    // gRPC's status-code table: "Error parsing request proto" is INTERNAL, raised by the library
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...QUEUE_RPCS, ...ADMIN_RPCS),
        I.garbageBytes,
        async (name, bytes) => {
          const who = RAW[name]!.service === "codeq.v1.AdminService" ? admin : attacker;
          const out = await answer(`raw ${name}`, (signal) =>
            rawCall(name, [bytes], opts(who, signal)),
          );
          if (out.ok) return;
          if (out.code === Status.INTERNAL) expect(out.message).toBe("Error deserializing request");
          else expectClear(`raw ${name}`, out.code, out.message);
        },
      ),
      { numRuns: RAW_RUNS * 2, ...BUDGET },
    );
  }, 60_000);
});

// ---------------------------------------------------------------------------------------
// No identity, a garbage one, a hostile signed one; admin RPCs without the right

/** JWTs signed with the router's own secret whose claims are unusable or unusual. */
let signed: { refused: string[]; unusual: string[] };

async function jwt(claims: Record<string, unknown>, sub = "svc-1"): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ ...claims })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(new TextEncoder().encode(JWT_SECRET));
}

beforeAll(async () => {
  const roles = ["producer", "worker"];
  signed = {
    refused: await Promise.all(
      ["victim:x", "{victim}", "", "x".repeat(129), "victim\n", 42, ["victim"], null].map(
        (tenant) => jwt({ tenant, roles }),
      ),
    ),
    unusual: await Promise.all(
      ["José", "a\nb", "x".repeat(10_000), "{victim}:s:a"].map((sub) =>
        jwt({ tenant: "jwtfuzz", roles }, sub),
      ),
    ),
  };
});

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");

function garbageAuthorization(): fc.Arbitrary<Metadata> {
  const printable = fc.string({
    unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
    maxLength: 64,
  });
  const value = fc.oneof(
    fc.constantFrom(
      "",
      "Bearer",
      "Bearer ",
      "Basic dmljdGltOng=",
      `Bearer ${TOKENS.victim}x`,
      `Bearer ${TOKENS.victim.slice(0, -1)}`,
      `Bearer ${TOKENS.victim.toUpperCase()}`,
      `Bearer ${TOKENS.victim} ${TOKENS.victim}`,
      `${TOKENS.victim}`,
      "Bearer a.b.c",
      `Bearer ${b64({ alg: "none" })}.${b64({ tenant: "victim", roles: ["admin"] })}.`,
      `Bearer ${b64({ alg: "HS256" })}.${b64({ tenant: "victim", roles: ["admin"] })}.AAAA`,
      `Bearer ${b64({ alg: "HS256", crit: ["x"] })}.${b64({ tenant: "victim" })}.AAAA`,
      `Bearer ${"x".repeat(8_000)}`,
    ),
    printable.map((s) => `Bearer ${s}`),
    printable,
    fc.constantFrom(...signed.refused).map((t) => `Bearer ${t}`),
  );
  return fc
    .option(value, { nil: undefined })
    .map((v) => new Metadata(v === undefined ? {} : { authorization: v }));
}

describe("without a usable identity", () => {
  test("no credential, or a garbage or forged one, is UNAUTHENTICATED on every RPC", async () => {
    const rpcs = { ...queueRpcs(), ...adminRpcs() };
    const call = fc.oneof(
      ...Object.entries(rpcs).map(([name, r]) => fc.tuple(fc.constant(name), r.request)),
    );
    await fc.assert(
      fc.asyncProperty(call, garbageAuthorization(), async ([name, req], metadata) => {
        const out = await answer(name, (signal) => rpcs[name]!.call(req, { metadata, signal }));
        expect(out.ok).toBe(false);
        if (!out.ok) expect(`${name}: ${Status[out.code]}`).toBe(`${name}: UNAUTHENTICATED`);
      }),
      {
        numRuns: RUNS * 2,
        examples: [[["Ack", { items: [] }], new Metadata()]],
        ...BUDGET,
      },
    );
  }, 60_000);

  test("the admin RPCs refuse a tenant's credential: PERMISSION_DENIED", async () => {
    const rpcs = adminRpcs();
    const call = fc.oneof(
      ...Object.entries(rpcs).map(([name, r]) => fc.tuple(fc.constant(name), r.request)),
    );
    await fc.assert(
      fc.asyncProperty(call, fc.constantFrom(attacker, victim), async ([name, req], who) => {
        const out = await answer(name, (signal) => rpcs[name]!.call(req, opts(who, signal)));
        expect(out.ok).toBe(false);
        if (!out.ok) expect(`${name}: ${Status[out.code]}`).toBe(`${name}: PERMISSION_DENIED`);
      }),
      { numRuns: RUNS, ...BUDGET },
    );
  }, 60_000);

  test("a validly signed JWT with an unusual subject works or is refused clearly", async () => {
    const unclear: string[] = [];
    for (const t of signed.unusual) {
      const sub = JSON.stringify(
        JSON.parse(Buffer.from(t.split(".")[1]!, "base64url").toString()).sub,
      );
      const o = (signal: AbortSignal) => ({
        metadata: new Metadata({ authorization: `Bearer ${t}` }),
        signal,
      });
      const calls: [string, (signal: AbortSignal) => Promise<unknown>][] = [
        ["Enqueue", (signal) => q.enqueue({ command: "JQ" }, o(signal))],
        ["Lease", (signal) => q.lease({ commands: ["JQ"] }, o(signal))],
        ["QueueStats", (signal) => q.queueStats({ command: "JQ" }, o(signal))],
      ];
      for (const [name, call] of calls) {
        const out = await answer(name, call);
        if (!out.ok && !CLEAR.has(out.code))
          unclear.push(`${name} with sub ${sub.slice(0, 40)}: ${Status[out.code]}: ${out.message}`);
      }
    }
    expect(unclear).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------
// Operators: hostile input through AdminService (last: it may move fuzzed queues)

describe("AdminService with hostile input from an admin", () => {
  test.each(ADMIN_RPCS)(
    "%s answers clearly and changes nothing of the victim's",
    async (name) => {
      await fuzz(name, adminRpcs()[name]!);
    },
    60_000,
  );
});

// ---------------------------------------------------------------------------------------

/** Runs one step of the final checks under the call deadline; its answer or why it failed. */
async function step<T>(
  what: string,
  call: (o: CallOptions) => Promise<T>,
  who: Caller,
): Promise<T> {
  const out = await answer(what, (signal) => call(opts(who, signal)));
  if (!out.ok) throw new Error(`${what}: ${Status[out.code]}: ${out.message.slice(0, 300)}`);
  return out.value;
}

test("afterwards every process serves, and the victim's leases still settle with its tokens", async () => {
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
  await expectVictimUntouched();
  expect(await victimView()).toEqual(baseline.view);
  victimSettled = true;
  for (const leaseToken of seeded.victimTokens) {
    const items = [{ leaseToken }];
    const ext = await step("extend", (o) => q.extend({ items }, o), victim);
    expect(ext.results[0]!.status!.code).toBe(Status.OK);
    const ack = await step("ack", (o) => q.ack({ items }, o), victim);
    expect(ack.results[0]!.code).toBe(Status.OK);
  }
}, 60_000);
