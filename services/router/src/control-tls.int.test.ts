import { redisTls } from "@codeq/common";
import { MigrationStore, RedisMapSource } from "@codeq/shardmap";
import { RedisServer, testCert } from "@codeq/testing";
import { routerCluster, within, type RouterCluster } from "./test/cluster";

/**
 * A control store behind TLS with a private CA (`rediss://`, `controlTlsCaFile`):
 * routers and shard workers read and follow the shard map, and keep the migration
 * record, over it.
 */

let control: RedisServer;
let rc: RouterCluster | undefined;

beforeAll(async () => {
  control = await RedisServer.start({
    spawnOnly: true,
    tls: { certFile: testCert("server.crt"), keyFile: testCert("server.key") },
  });
});
afterAll(async () => {
  await rc?.close();
  await control.stop();
});

test("routers and shard workers follow a map in a control store that serves TLS with a private CA", async () => {
  const over = { controlUrl: control.tlsUrl, controlTlsCaFile: testCert("ca.crt") };
  rc = await routerCluster({
    commands: { X: "a" },
    control,
    shard: { mover: false, ...over },
    router: over,
  });
  const before = rc.router.routing.cache.version;
  await rc.change((m) => ({ ...m, commands: { ...m.commands, X: "b" } }));
  await within(2_000, () => rc!.router.routing.currentShard("X", "t1") === "b");
  for (const id of ["a", "b"])
    await within(2_000, () => rc!.workers.get(id)!.mapVersion() === before + 1);
  await rc.client("t1").enqueue({ command: "X", payload: Buffer.from("over TLS") });
  expect((await rc.workers.get("b")!.engine.stats({ command: "X", tenant: "t1" })).ready).toBe(1);
});

test("the CA is what lets a client trust the control store: without it the connection is refused", async () => {
  const prefix = `${control.keyPrefix}-ca`;
  const withCa = new RedisMapSource({
    url: control.tlsUrl,
    prefix,
    redisOptions: redisTls(control.tlsUrl, testCert("ca.crt")),
  });
  // the system's CAs only; no retry after the refusal, so its connection ends there
  // (closing an ended one would leave ioredis a 2 s timer)
  const errors: string[] = [];
  const withoutCa = new RedisMapSource({
    url: control.tlsUrl,
    prefix,
    redisOptions: { ...redisTls(control.tlsUrl, ""), retryStrategy: () => null },
    onError: (err) => errors.push(err.message),
  });
  const migrations = new MigrationStore(
    control.tlsUrl,
    prefix,
    redisTls(control.tlsUrl, testCert("ca.crt")),
  );
  try {
    expect(await withCa.get()).toBeUndefined(); // read: no map under this prefix
    expect(await migrations.listFinished()).toEqual([]);
    await expect(withoutCa.get()).rejects.toThrow();
    expect(errors.join("; ")).toMatch(/certificate/);
  } finally {
    await withCa.close();
    await migrations.close();
  }
});
