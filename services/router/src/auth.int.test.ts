import { setTimeout as sleep } from "node:timers/promises";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { decodeJwt, SignJWT } from "jose";
import { ClientError, createChannel, createClient, Metadata, Status } from "nice-grpc";
import {
  LeaseStreamRequest,
  QueueServiceDefinition,
  EnqueueStreamRequest,
  type EnqueueStreamResponse,
  type QueueServiceClient,
} from "@codeq/proto";
import { Channel } from "@codeq/server-kit";
import { RedisServer } from "@codeq/testing";
import { routerCluster, Stream, within, type RouterCluster } from "./test/cluster";

/**
 * Issue 7 through the real router: callers are authenticated from `authorization`
 * (static tokens and HS256 JWTs here), the tenant comes from the credential only,
 * roles gate every RPC, tenants cannot reach each other's tasks by any RPC, and
 * shard workers accept only the routers.
 */

const SHARD_SECRET = "router-to-shard-secret-0123456789abcdef";
const JWT_SECRET = "jwt-hs256-secret-0123456789abcdef0123456789";
const TOKENS = {
  producerA: "tok-producer-a-0123456789",
  workerA: "tok-worker-a-0123456789",
  bothB: "tok-both-b-0123456789ab",
  admin: "tok-admin-0123456789abcd",
  adminA: "tok-admin-a-0123456789ab",
  withdrawn: "tok-withdrawn-0123456789",
};

const GRACE_MS = 3_000;

let server: RedisServer;
let rc: RouterCluster;
let dir: string;
let tokensFile: string;
const TOKEN_LINES = [
  "tokens:",
  `  - { token: ${TOKENS.producerA}, tenant: A, roles: [producer] }`,
  `  - { token: ${TOKENS.workerA}, tenant: A, roles: [producer, worker] }`,
  `  - { token: ${TOKENS.bothB}, tenant: B, roles: [producer, worker] }`,
  `  - { token: ${TOKENS.admin}, tenant: ops, roles: [admin] }`,
  `  - { token: ${TOKENS.adminA}, tenant: A, roles: [admin] }`,
  `  - { token: ${TOKENS.withdrawn}, tenant: W, roles: [producer, worker] }`,
];
/** How often the router looks at the tokens file, and checks a stream's credential again. */
const TOKENS_CHECK_MS = 100;
const RECHECK_MS = 300;

beforeAll(async () => {
  server = await RedisServer.start();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "codeq-auth-"));
  tokensFile = path.join(dir, "tokens.yaml");
  fs.writeFileSync(tokensFile, TOKEN_LINES.join("\n"));
  const secretFile = path.join(dir, "jwt.secret");
  fs.writeFileSync(secretFile, JWT_SECRET);
  rc = await routerCluster({
    server,
    shard: { devIdentity: false, routerSecret: SHARD_SECRET },
    router: {
      devIdentity: false,
      shardSecret: SHARD_SECRET,
      authTokensFile: tokensFile,
      jwtHs256SecretFile: secretFile,
      adminTenants: "ops",
      // a token is accepted until its exp exactly; streams settle for this long after
      jwtClockToleranceSec: 0,
      streamCredentialGraceMs: GRACE_MS,
      authTokensCheckIntervalMs: TOKENS_CHECK_MS,
      streamCredentialRecheckMs: RECHECK_MS,
    },
  });
});
afterAll(async () => {
  await rc.close();
  await server.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const as = (token: string) => rc.clientWith(bearer(token));

async function code(p: Promise<unknown>): Promise<Status> {
  return p.then(
    () => Status.OK,
    (e: unknown) => (e instanceof ClientError ? e.code : Status.UNKNOWN),
  );
}

function jwt(claims: Record<string, unknown>, opts: { secret?: string; expSec?: number } = {}) {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ ...claims })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject("svc-1")
    .setIssuedAt(now)
    .setExpirationTime(now + (opts.expSec ?? 300))
    .sign(new TextEncoder().encode(opts.secret ?? JWT_SECRET));
}

test("no credential, a bad one, or a stated tenant alone is UNAUTHENTICATED", async () => {
  const task = { command: "X", payload: Buffer.from("x") };
  expect(await code(rc.clientWith({}).enqueue(task))).toBe(Status.UNAUTHENTICATED);
  expect(await code(as("not-a-known-token-at-all").enqueue(task))).toBe(Status.UNAUTHENTICATED);
  expect(await code(rc.clientWith({ authorization: "Basic abc" }).enqueue(task))).toBe(
    Status.UNAUTHENTICATED,
  );
  expect(await code(rc.clientWith({ "x-codeq-tenant": "A" }).enqueue(task))).toBe(
    Status.UNAUTHENTICATED,
  );
});

test("a batch split across shards is refused as a whole when the caller may not enqueue, as on one shard", async () => {
  await rc.change((m) => ({ ...m, commands: { ...m.commands, SPLIT_A: "a", SPLIT_B: "b" } }));
  await within(2_000, () => rc.router.routing.currentShard("SPLIT_B", "ops") === "b");
  const admin = as(TOKENS.admin); // admin only: no producer role
  const one = { tasks: [{ command: "SPLIT_A", payload: Buffer.from("x") }] };
  const split = { tasks: [...one.tasks, { command: "SPLIT_B", payload: Buffer.from("y") }] };
  expect(await code(admin.enqueueBatch(one))).toBe(Status.PERMISSION_DENIED);
  expect(await code(admin.enqueueBatch(split))).toBe(Status.PERMISSION_DENIED);
});

test("a producer credential enqueues but cannot lease or administer", async () => {
  const p = as(TOKENS.producerA);
  await p.enqueue({ command: "X", payload: Buffer.from("x") });
  expect(await code(p.lease({ commands: ["X"] }))).toBe(Status.PERMISSION_DENIED);
  expect(await code(rc.adminWith(bearer(TOKENS.producerA)).getShardMap({}))).toBe(
    Status.PERMISSION_DENIED,
  );
  expect(await code(p.listDead({ command: "X" }))).toBe(Status.PERMISSION_DENIED);
  expect((await rc.adminWith(bearer(TOKENS.admin)).getShardMap({})).map!.version).toBeGreaterThan(
    0,
  );
});

test("a tenant's admin serves its own dead-letter queue, and only the admin tenants' admins use AdminService", async () => {
  const ops = rc.adminWith(bearer(TOKENS.admin));
  const tenantAdmin = rc.adminWith(bearer(TOKENS.adminA));
  expect((await ops.getShardMap({})).map?.version).toBeGreaterThan(0);
  for (const call of [
    tenantAdmin.getShardMap({}),
    tenantAdmin.assignCommand({ command: "X", shard: "b", dryRun: true }),
    tenantAdmin.listMigrations({}),
  ])
    await expect(call).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
      details: expect.stringMatching(
        /is open to the admins of ops only \(CODEQ_ROUTER_ADMIN_TENANTS\)/,
      ),
    });
  expect(await code(as(TOKENS.adminA).listDead({ command: "X" }))).toBe(Status.OK);
});

test("the tenant comes from the credential: a stated x-codeq-tenant is ignored", async () => {
  const c = rc.clientWith({ ...bearer(TOKENS.bothB), "x-codeq-tenant": "A" });
  const { taskId } = await c.enqueue({ command: "T", payload: Buffer.from("b") });
  const stored = await rc.workers.get("a")!.engine.getTask({ command: "T", tenant: "B" }, taskId);
  expect(stored?.tenant).toBe("B");
});

test("tenant A reaches none of tenant B's tasks, by id, by lease token or by stats", async () => {
  const b = as(TOKENS.bothB);
  const a = as(TOKENS.workerA);
  const { taskId } = await b.enqueue({ command: "ISO", payload: Buffer.from("secret of B") });
  await b.enqueue({ command: "ISO", payload: Buffer.from("second") });
  const leased = await b.lease({ commands: ["ISO"], maxTasks: 1 });
  const token = leased.tasks[0]!.leaseToken;

  expect(await code(a.getTask({ command: "ISO", taskId }))).toBe(Status.NOT_FOUND);
  expect((await a.queueStats({ command: "ISO" })).total).toMatchObject({ ready: 0, leased: 0 });
  expect((await a.lease({ commands: ["ISO"], maxTasks: 10 })).tasks).toEqual([]);
  const foreign = { leaseToken: token };
  expect((await a.ack({ items: [foreign] })).results[0]!.code).toBe(Status.NOT_FOUND);
  expect((await a.nack({ items: [foreign] })).results[0]!.code).toBe(Status.NOT_FOUND);
  expect((await a.extend({ items: [foreign] })).results[0]!.status!.code).toBe(Status.NOT_FOUND);
  // a cross-tenant lease needs the right A does not have
  expect(await code(a.lease({ commands: ["ISO"], allTenants: true }))).toBe(
    Status.PERMISSION_DENIED,
  );
  // and B's task is untouched: still leased by B, the other still ready
  const stats = await rc.workers.get("a")!.engine.stats({ command: "ISO", tenant: "B" });
  expect(stats).toMatchObject({ ready: 1, leased: 1 });
  expect((await b.ack({ items: [foreign] })).results[0]!.code).toBe(Status.OK);
});

test("JWTs: a valid one works; expired, wrongly signed or tenantless ones are refused", async () => {
  const good = await jwt({ tenant: "C", roles: ["producer"] });
  await as(good).enqueue({ command: "J", payload: Buffer.from("j") });
  expect((await rc.workers.get("a")!.engine.stats({ command: "J", tenant: "C" })).ready).toBe(1);
  const expired = await jwt({ tenant: "C", roles: ["producer"] }, { expSec: -120 });
  const forged = await jwt(
    { tenant: "C", roles: ["producer"] },
    { secret: "another-secret-0123456789abcdef0123456789" },
  );
  const tenantless = await jwt({ roles: ["producer"] });
  for (const t of [expired, forged, tenantless])
    expect(await code(as(t).enqueue({ command: "J" }))).toBe(Status.UNAUTHENTICATED);
  const scoped = await jwt({ tenant: "C", scope: "codeq:produce" });
  expect(await code(as(scoped).lease({ commands: ["J"] }))).toBe(Status.PERMISSION_DENIED);
});

describe("a stream outlives no credential", () => {
  const producer = () => jwt({ tenant: "E", roles: ["producer"] }).then(as);
  /** A worker token accepted for 3 to 4 s more, and the time it stops being accepted. */
  async function shortLived(): Promise<{ client: QueueServiceClient; expiresAt: number }> {
    const token = await jwt({ tenant: "E", roles: ["producer", "worker"] }, { expSec: 4 });
    return { client: as(token), expiresAt: decodeJwt(token).exp! * 1000 };
  }
  const pastExpiry = (at: number) => within(5_000, () => Date.now() > at + 200);
  const task = (command: string, id: string) =>
    rc.workers.get("a")!.engine.getTask({ command, tenant: "E" }, id);
  const stats = (command: string) => rc.workers.get("a")!.engine.stats({ command, tenant: "E" });
  const expiredEnd = {
    code: Status.UNAUTHENTICATED,
    details: expect.stringMatching(
      /^the stream's credential expired \(accepted until .*\); open a new stream/,
    ),
  };

  test("a LeaseStream gets no task after its JWT expires, settles what it holds, then ends", async () => {
    const { client, expiresAt } = await shortLived();
    const s = new Stream(rc, client);
    s.send({ subscribe: { commands: ["EXP1"] }, credits: 10 });
    const p = await producer();
    const first = await p.enqueue({ command: "EXP1", payload: Buffer.from("1") });
    await within(2_000, () => s.tasks().length === 1);
    await pastExpiry(expiresAt);
    await p.enqueue({ command: "EXP1", payload: Buffer.from("2") });
    await new Promise((r) => setTimeout(r, 300));
    expect(s.tasks().map((t) => t.task!.id)).toEqual([first.taskId]);
    expect(s.ended).toBe(false); // within the grace, holding a task
    // what it holds it may still settle; then it ends at once
    s.send({ requestId: 1, acks: [{ leaseToken: s.tasks()[0]!.leaseToken }] });
    await within(2_000, () => s.ended);
    expect(s.settled(1)?.acks[0]?.code).toBe(Status.OK);
    expect(s.failure).toMatchObject(expiredEnd);
    expect(await stats("EXP1")).toMatchObject({ ready: 1, leased: 0 });
    expect((await task("EXP1", first.taskId))?.state).toBe("COMPLETED");
  });

  test("a LeaseStream holding tasks past the grace ends, and they go back as failed attempts", async () => {
    const { client, expiresAt } = await shortLived();
    const s = new Stream(rc, client);
    s.send({ subscribe: { commands: ["EXP2"] }, credits: 10 });
    const { taskId } = await (await producer()).enqueue({ command: "EXP2" });
    await within(2_000, () => s.tasks().length === 1);
    await pastExpiry(expiresAt);
    expect(s.ended).toBe(false);
    await within(GRACE_MS + 2_000, () => s.ended);
    expect(Date.now()).toBeGreaterThanOrEqual(expiresAt + GRACE_MS);
    expect(s.failure).toMatchObject(expiredEnd);
    await within(2_000, async () => (await task("EXP2", taskId))?.state === "READY");
    // counted, as when a stream breaks: a task that outlasts every token would go round
    // for ever otherwise
    expect(await task("EXP2", taskId)).toMatchObject({ attempts: 1 });
  });

  /**
   * An EnqueueStream of `client` sending one task of `command` per batch: `send(seq)`,
   * what it answered, and how it ended (bounded: a stream that never ends fails the
   * test, not the run).
   */
  function enqueueStream(client: QueueServiceClient, command: string) {
    const requests = new Channel<EnqueueStreamRequest>();
    const answers: EnqueueStreamResponse[] = [];
    const ended = (async () => {
      const signal = AbortSignal.timeout(10_000);
      for await (const a of client.enqueueStream(requests, { signal })) answers.push(a);
    })().catch((e: unknown) => e);
    const send = (seq: number) =>
      requests.push(
        EnqueueStreamRequest.fromPartial({
          seq,
          tasks: [{ command, payload: Buffer.from("x") }],
        }),
      );
    return { send, answers, ended };
  }

  test("a static token taken out of the tokens file stops the streams opened with it, and is refused", async () => {
    const client = as(TOKENS.withdrawn);
    const { send, answers, ended: enqueuing } = enqueueStream(client, "WD");
    send(1);
    await within(2_000, () => answers.length === 1);
    const s = new Stream(rc, client);
    s.send({ subscribe: { commands: ["WD"] }, credits: 10 });
    await within(2_000, () => s.tasks().length === 1);
    // the token is withdrawn: a new file without it is renamed over the old one
    const next = `${tokensFile}.next`;
    fs.writeFileSync(next, TOKEN_LINES.filter((l) => !l.includes(TOKENS.withdrawn)).join("\n"));
    fs.renameSync(next, tokensFile);
    const withdrawnEnd = {
      code: Status.UNAUTHENTICATED,
      details: expect.stringContaining("the stream's credential is no longer accepted"),
    };
    expect(await enqueuing).toMatchObject(withdrawnEnd);
    // the LeaseStream drains as at an expiry: it holds a task, so it ends after the grace
    await sleep(RECHECK_MS + TOKENS_CHECK_MS + 200);
    expect(s.ended).toBe(false);
    await within(GRACE_MS + 2_000, () => s.ended);
    expect(s.failure).toMatchObject(withdrawnEnd);
    expect(await code(client.enqueue({ command: "WD" }))).toBe(Status.UNAUTHENTICATED);
    // the other tokens of the file are still accepted
    expect(await code(as(TOKENS.producerA).enqueue({ command: "WD" }))).toBe(Status.OK);
  }, 20_000);

  test("a LeaseStream that reads nothing is let go at the end of the grace: what never reached it goes back uncounted", async () => {
    const n = 40;
    const payload = Buffer.alloc(512 * 1024, 1); // more than the transports buffer
    const p = await producer();
    for (let i = 0; i < n; i += 10)
      await p.enqueueBatch({
        tasks: Array.from({ length: 10 }, () => ({ command: "EXP4", payload, maxAttempts: 1 })),
      });
    const { client, expiresAt } = await shortLived(); // after the enqueues, however slow
    let readOn!: () => void;
    const reading = new Promise<void>((resolve) => (readOn = resolve));
    const s = new Stream(rc, client, reading); // reads its first answer only, until readOn
    s.send({ subscribe: { commands: ["EXP4"], maxBatch: 1 }, credits: n });
    await within(5_000, async () => (await stats("EXP4")).leased > 0);
    await sleep(expiresAt + GRACE_MS + 200 - Date.now());
    // the shards' streams are closed once the grace is over, though the client still
    // holds its stream open without reading: nothing stays leased to it; what the
    // router had queued for it and never wrote is ready again, no attempt counted
    await within(5_000, async () => (await stats("EXP4")).leased === 0);
    const after = await stats("EXP4");
    expect(after.ready).toBeGreaterThan(0);
    expect(after.ready + after.dead).toBe(n);
    readOn();
    await s.close();
  }, 30_000);

  test("an EnqueueStream stops reading once its JWT expires", async () => {
    const { client, expiresAt } = await shortLived();
    const { send, answers, ended: done } = enqueueStream(client, "EXP3");
    send(1);
    await within(2_000, () => answers.length === 1);
    await pastExpiry(expiresAt);
    send(2);
    expect(await done).toMatchObject(expiredEnd);
    expect(answers.map((a) => a.seq)).toEqual([1]);
    expect(await stats("EXP3")).toMatchObject({ ready: 1 });
  });
});

test("a shard worker refuses direct calls without the routers' secret", async () => {
  const channel = createChannel(rc.addresses.get("a")!);
  const direct = (metadata: Record<string, string>) =>
    createClient(QueueServiceDefinition, channel, { "*": { metadata: new Metadata(metadata) } });
  expect(await code(direct({ "x-codeq-tenant": "A" }).enqueue({ command: "X" }))).toBe(
    Status.UNAUTHENTICATED,
  );
  expect(
    await code(
      direct({
        "x-codeq-tenant": "A",
        "x-codeq-router-secret": "wrong-secret-0123456789abcdef",
      }).enqueue({
        command: "X",
      }),
    ),
  ).toBe(Status.UNAUTHENTICATED);
  expect(await code(direct(bearer(TOKENS.workerA)).enqueue({ command: "X" }))).toBe(
    Status.UNAUTHENTICATED,
  );
  channel.close();
});

test("shards that refuse the router's secret are the cluster's failure, not the caller's credentials", async () => {
  const mismatched = await routerCluster({
    server,
    shard: { devIdentity: false, routerSecret: SHARD_SECRET },
    router: { shardSecret: "another-secret-than-the-shards-0123456789" },
  });
  try {
    const c = mismatched.client("t1");
    const requests = new Channel<LeaseStreamRequest>();
    requests.push(LeaseStreamRequest.fromPartial({ subscribe: { commands: ["X"] }, credits: 1 }));
    const stream = (async () => {
      // (bounded: a stream that never ends fails the test, not the run)
      for await (const _ of c.leaseStream(requests, { signal: AbortSignal.timeout(10_000) }))
        void _;
    })();
    for (const call of [
      c.enqueue({ command: "X", payload: Buffer.from("x") }),
      c.queueStats({ command: "X" }),
      // a stream too: it ends, rather than reopening its shard stream for ever unanswered
      stream,
    ]) {
      const err = await call.catch((e: unknown) => e);
      expect(err).toMatchObject({
        code: Status.INTERNAL,
        details: expect.stringContaining("does not accept this router"),
      });
    }
  } finally {
    await mismatched.close();
  }
});
