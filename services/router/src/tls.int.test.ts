import * as fs from "node:fs";
import { ChannelCredentials } from "@grpc/grpc-js";
import { ClientError, createChannel, createClient, Metadata, Status } from "nice-grpc";
import { MigrationState, QueueServiceDefinition } from "@codeq/proto";
import { RedisServer, testCert } from "@codeq/testing";
import { routerCluster, within, type RouterCluster } from "./test/cluster";

/**
 * TLS at every gRPC hop: clients → router with mutual TLS, router → shard workers
 * with mutual TLS (which is also how shard workers know a caller is a router), and
 * shard worker → shard worker for the migration mover.
 */

const read = (name: Parameters<typeof testCert>[0]) => fs.readFileSync(testCert(name));
const clientCreds = () =>
  ChannelCredentials.createSsl(read("ca.crt"), read("client.key"), read("client.crt"));

let server: RedisServer;
let rc: RouterCluster;

beforeAll(async () => {
  server = await RedisServer.start();
  rc = await routerCluster({
    server,
    clientCredentials: clientCreds(),
    shard: {
      devIdentity: false,
      tlsCertFile: testCert("server.crt"),
      tlsKeyFile: testCert("server.key"),
      tlsCaFile: testCert("ca.crt"),
    },
    router: {
      tlsCertFile: testCert("server.crt"),
      tlsKeyFile: testCert("server.key"),
      tlsClientCaFile: testCert("ca.crt"),
      shardTlsCaFile: testCert("ca.crt"),
      shardTlsCertFile: testCert("client.crt"),
      shardTlsKeyFile: testCert("client.key"),
    },
  });
});
afterAll(async () => {
  await rc.close();
  await server.stop();
});

async function code(p: Promise<unknown>): Promise<Status> {
  return p.then(
    () => Status.OK,
    (e: unknown) => (e instanceof ClientError ? e.code : Status.UNKNOWN),
  );
}

function clientAt(address: string, credentials?: ChannelCredentials) {
  const channel = createChannel(address, credentials);
  const client = createClient(QueueServiceDefinition, channel, {
    "*": { metadata: new Metadata({ "x-codeq-tenant": "t1" }) },
  });
  return { client, close: () => channel.close() };
}

test("clients with a certificate of the CA work end to end over TLS to the router and the shards", async () => {
  const c = rc.client("t1");
  await c.enqueue({ command: "TLS", payload: Buffer.from("secret") });
  const got = await c.lease({ commands: ["TLS"] });
  expect(Buffer.from(got.tasks[0]!.task!.payload).toString()).toBe("secret");
  expect(
    (await c.ack({ items: [{ leaseToken: got.tasks[0]!.leaseToken }] })).results[0]!.code,
  ).toBe(0);
});

test("the router refuses plaintext, no client certificate, and a certificate of another CA", async () => {
  const address = `127.0.0.1:${rc.router.port}`;
  const attempts = [
    clientAt(address),
    clientAt(address, ChannelCredentials.createSsl(read("ca.crt"))),
    clientAt(
      address,
      ChannelCredentials.createSsl(read("ca.crt"), read("stranger.key"), read("stranger.crt")),
    ),
  ];
  for (const a of attempts) {
    expect(
      await code(a.client.enqueue({ command: "TLS" }, { signal: AbortSignal.timeout(5_000) })),
    ).toBe(Status.UNAVAILABLE);
    a.close();
  }
});

test("a shard worker takes only mutual-TLS callers, and trusts the identity they state", async () => {
  const shard = rc.addresses.get("a")!;
  const plain = clientAt(shard);
  expect(
    await code(plain.client.enqueue({ command: "TLS" }, { signal: AbortSignal.timeout(5_000) })),
  ).toBe(Status.UNAVAILABLE);
  plain.close();
  const router = clientAt(shard, clientCreds());
  expect(
    (await router.client.enqueue({ command: "TLSD", payload: Buffer.from("x") })).taskId,
  ).toHaveLength(26);
  router.close();
});

test("the migration mover moves tasks between shards over mutual TLS", async () => {
  const c = rc.client("t1");
  await c.enqueueBatch({
    tasks: Array.from({ length: 20 }, () => ({ command: "TLSM", payload: Buffer.from("m") })),
  });
  const { migrations } = await rc.admin().assignCommand({ command: "TLSM", shard: "b" });
  await within(10_000, async () => {
    const m = await rc.admin().getMigration({ id: migrations[0]!.id });
    return m.migration!.state === MigrationState.MIGRATION_STATE_COMPLETED;
  });
  expect((await rc.workers.get("b")!.engine.stats({ command: "TLSM", tenant: "t1" })).ready).toBe(
    20,
  );
});
