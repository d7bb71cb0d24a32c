import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createChannel, createClient, Metadata, Status, type Channel } from "nice-grpc";
import { AdminServiceDefinition, QueueServiceDefinition } from "@codeq/proto";
import { ConfigError, createLogger } from "@codeq/server-kit";
import { shardConfig, startShardWorker, type ShardWorker } from "@codeq/shard";
import { RedisMapSource } from "@codeq/shardmap";
import { RedisServer } from "@codeq/testing";
import { routerConfig } from "./config";
import { startRouter, type Router } from "./router";

/**
 * A deployment without a control store: the router serves a static shard map file,
 * in front of shard workers that run standalone.
 */
let server: RedisServer;
let dir: string;
const workers: ShardWorker[] = [];
const channels: Channel[] = [];
beforeAll(async () => {
  server = await RedisServer.start();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "codeq-static-map-"));
});
afterAll(async () => {
  for (const c of channels) c.close();
  for (const w of workers) await w.stop();
  await server.stop();
  fs.rmSync(dir, { recursive: true });
});

const file = (name: string, text: string) => {
  const p = path.join(dir, name);
  fs.writeFileSync(p, text);
  return p;
};

const start = (shardMapFile: string) =>
  startRouter(
    routerConfig({
      listen: "127.0.0.1:0",
      metricsListen: "",
      // no control store answers here: the router must not need one
      controlUrl: "redis://127.0.0.1:1",
      shardMapFile,
      devIdentity: true,
      graceMs: 500,
    }),
    createLogger("router", "silent"),
  );

test("routes by the file's map, with no control store; map changes are refused", async () => {
  for (const id of ["a", "b"])
    workers.push(
      await startShardWorker(
        shardConfig({
          id,
          listen: "127.0.0.1:0",
          metricsListen: "",
          redisUrl: server.url,
          keyPrefix: `${server.keyPrefix}-static-${id}`,
          devIdentity: true,
          graceMs: 500,
        }),
        createLogger(`shard-${id}`, "silent"),
      ),
    );
  const [a, b] = workers;
  const mapFile = file(
    "map.yaml",
    [
      "shards:",
      `  a: { endpoint: '127.0.0.1:${a!.port}' }`,
      `  b: { endpoint: '127.0.0.1:${b!.port}' }`,
      "defaultShard: a",
      "commands:",
      "  RENDER: b",
    ].join("\n"),
  );
  let router: Router | undefined;
  try {
    router = await start(mapFile);
    const channel = createChannel(`127.0.0.1:${router.port}`);
    channels.push(channel);
    const meta = (roles: string) => ({
      "*": { metadata: new Metadata({ "x-codeq-tenant": "t1", "x-codeq-roles": roles }) },
    });
    const queue = createClient(QueueServiceDefinition, channel, meta("producer,worker"));
    await queue.enqueue({ command: "RENDER" });
    await queue.enqueue({ command: "MAIL" });
    expect((await b!.engine.stats({ command: "RENDER", tenant: "t1" })).ready).toBe(1);
    expect((await a!.engine.stats({ command: "MAIL", tenant: "t1" })).ready).toBe(1);
    const leased = await queue.lease({ commands: ["RENDER"], maxTasks: 5 });
    expect(leased.tasks.map((t) => t.task!.shard)).toEqual(["b"]);

    const admin = createClient(AdminServiceDefinition, channel, meta("admin"));
    const { map } = await admin.getShardMap({});
    expect(map!.shards.map((s) => s.id).sort()).toEqual(["a", "b"]);
    await expect(admin.assignCommand({ command: "MAIL", shard: "b" })).rejects.toMatchObject({
      code: Status.FAILED_PRECONDITION,
      details: expect.stringContaining(`the shard map is the static file ${mapFile}`),
    });
    expect((await admin.listMigrations({ includeFinished: true })).migrations).toEqual([]);
  } finally {
    await router?.stop();
  }
});

test("a bad map file stops the router with every problem and the path", async () => {
  const bad = file(
    "bad.yaml",
    "shards:\n  a: { endpoint: 'a:1' }\ndefaultShard: b\ncommands:\n  X: c\n",
  );
  const err = await start(bad).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConfigError);
  const message = (err as Error).message;
  expect(message).toContain(bad);
  expect(message).toMatch(/defaultShard: shard "b" is not in shards/);
  expect(message).toMatch(/"c"/);
  const missing = path.join(dir, "missing.yaml");
  await expect(start(missing)).rejects.toThrow(missing);
});

test("a bootstrap map file is written to an empty control store once; after that the store's map is served", async () => {
  const prefix = `${server.keyPrefix}-bootstrap`;
  const boot = (bootstrapMapFile: string) =>
    startRouter(
      routerConfig({
        listen: "127.0.0.1:0",
        metricsListen: "",
        controlUrl: server.url,
        controlPrefix: prefix,
        bootstrapMapFile,
        devIdentity: true,
        graceMs: 500,
      }),
      createLogger("router", "silent"),
    );
  const first = file("first.yaml", "shards:\n  a: { endpoint: '127.0.0.1:1' }\ndefaultShard: a\n");
  const second = file(
    "second.yaml",
    "shards:\n  z: { endpoint: '127.0.0.1:2' }\ndefaultShard: z\n",
  );
  const source = new RedisMapSource({ url: server.url, prefix });
  const routers: Router[] = [];
  try {
    expect(await source.get()).toBeUndefined();
    routers.push(await boot(first));
    expect(await source.get()).toMatchObject({ version: 1, defaultShard: "a" });
    // a router started later with another file serves the store's map, and writes nothing
    routers.push(await boot(second));
    expect(await source.get()).toMatchObject({ version: 1, defaultShard: "a" });
    expect(routers[1]!.routing.map.defaultShard).toBe("a");
    // a bad file stops the start, whatever the store holds
    const bad = file("boot-bad.yaml", "shards: {}\ndefaultShard: q\n");
    await expect(boot(bad)).rejects.toBeInstanceOf(ConfigError);
    // as does a static map file beside it: which map counts would be unclear
    await expect(
      startRouter(
        routerConfig({ shardMapFile: first, bootstrapMapFile: first }),
        createLogger("router", "silent"),
      ),
    ).rejects.toThrow(/exclude each other/);
  } finally {
    for (const r of routers) await r.stop();
    await source.close();
  }
});
