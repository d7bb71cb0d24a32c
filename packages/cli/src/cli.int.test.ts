import { spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { createChannel, createClient, Metadata, type Channel } from "nice-grpc";
import { startLocalCluster, type LocalCluster } from "@codeq/local-cluster";
import { QueueServiceDefinition } from "@codeq/proto";
import { baseEnv, BIN, requireBuilt, runCodeq } from "./test/run-codeq";

let cluster: LocalCluster;
let router: string;

/** Runs `codeq ARGS` against the cluster's router as a separate process. */
const codeq = (args: string[], env: Record<string, string> = {}) => runCodeq(router, args, env);

async function json<T = any>(args: string[]): Promise<T> {
  const r = await codeq([...args, "--json"]);
  expect(r).toMatchObject({ code: 0, stderr: "" });
  return JSON.parse(r.stdout) as T;
}

const mapVersion = async () => (await json(["map"])).map.version as number;

/** `codeq ARGS` started against the cluster's router: its output so far, and its exit code once it exits. */
function started(args: string[]) {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...baseEnv(), CODEQ_ROUTER: router },
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Polls until `check` holds (bounded by the test's timeout, not asserted on time). */
async function until(check: () => Promise<boolean>): Promise<void> {
  while (!(await check())) await sleep(100);
}

/** `n` dead tasks of `command` (tenant default), payloads p1..pn, each dead-lettered with "boom". */
async function deadTasks(command: string, n: number): Promise<void> {
  const channel: Channel = createChannel(router);
  try {
    const queue = createClient(QueueServiceDefinition, channel, {
      "*": { metadata: new Metadata({ "x-codeq-tenant": "default" }) },
    });
    await queue.enqueueBatch({
      tasks: Array.from({ length: n }, (_, i) => ({ command, payload: Buffer.from(`p${i + 1}`) })),
    });
    const held = await queue.lease({ commands: [command], maxTasks: n });
    await queue.nack({
      items: held.tasks.map((t) => ({ leaseToken: t.leaseToken, deadLetter: true, error: "boom" })),
    });
  } finally {
    channel.close();
  }
}

beforeAll(async () => {
  requireBuilt();
  cluster = await startLocalCluster({ shards: 3, routers: 1, commands: { "cli.on-c": "c" } });
  router = cluster.routers[0]!.address;
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
}, 120_000);

describe("codeq against a local cluster", () => {
  test("shards lists a, b and c, healthy", async () => {
    const r = await codeq(["shards"]);
    expect(r.code).toBe(0);
    const [header, ...rows] = r.stdout.trimEnd().split("\n");
    expect(header).toMatch(/^SHARD\s+ENDPOINT\s+STATE\s+HEALTHY\s+BREAKER\s+DEPTH\s+MAP\s+ERROR$/);
    expect(rows.map((l) => l.split(/\s+/)[0])).toEqual(["a", "b", "c"]);
    for (const row of rows) expect(row).toMatch(/ACTIVE\s+yes\s+CLOSED/);
    const listed = await json(["shards"]);
    expect(listed.shards.map((s: any) => s.shard.id)).toEqual(["a", "b", "c"]);
  }, 120_000);

  test("map --json parses and carries the version and assignments", async () => {
    const { map, stale } = await json(["map"]);
    expect(map.version).toBeGreaterThanOrEqual(1);
    expect(stale).toBe(false);
    expect(map.defaultShard).toBe("a");
    expect(map.assignments).toContainEqual({ command: "cli.on-c", tenant: "", shard: "c" });
  }, 120_000);

  test("enqueue, stats, a dry run that changes nothing, then assign --wait moves the tasks", async () => {
    const enq = await codeq(["enqueue", "cli.move", "--count", "5", "--payload", "hi"]);
    expect(enq.code).toBe(0);
    expect(enq.stdout.trim().split("\n")).toHaveLength(5);

    const before = await json(["stats", "cli.move"]);
    expect(before[0]).toMatchObject({ command: "cli.move", total: { ready: 5 } });
    expect(before[0].shards.map((s: any) => s.shard)).toEqual(["a"]);

    const version = await mapVersion();
    const dry = await codeq(["assign", "cli.move", "--to", "b", "--dry-run"]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain("dry run: nothing changed");
    expect(dry.stdout).toMatch(/a → b\s+default\s+5\s+0\s+0\s+0/);
    expect(await mapVersion()).toBe(version);

    const moved = await codeq(["assign", "cli.move", "--to", "b", "--wait"]);
    expect(moved.code).toBe(0);
    const id = /migration (\S+) COMPLETED: cli\.move is on b; moved 5 tasks/.exec(
      moved.stdout,
    )?.[1];
    expect(id).toBeDefined();
    expect(moved.stderr).toContain("COMPLETED"); // progress lines (stderr is not a terminal)

    const table = await codeq(["stats", "cli.move"]);
    expect(table.stdout).toMatch(/^cli\.move\s+b\s+5\s+0\s+0\s+0\s+0$/m);
    const after = await json(["stats", "cli.move"]);
    expect(after[0].total.ready).toBe(5);
    expect(after[0].shards).toEqual([expect.objectContaining({ shard: "b" })]);

    const { migrations } = await json(["migrations", "--all"]);
    expect(migrations).toContainEqual(
      expect.objectContaining({
        id,
        command: "cli.move",
        fromShard: "a",
        toShard: "b",
        state: "MIGRATION_STATE_COMPLETED",
      }),
    );
    const running = await json(["migrations"]);
    expect(running.migrations.map((m: any) => m.id)).not.toContain(id);

    // counted on both sides: a is no longer read and holds none of it, b holds the 5
    const verified = await codeq(["verify", id!]);
    expect(verified).toMatchObject({ code: 0, stderr: "" });
    expect(verified.stdout).toMatch(/^source\s+a\s+no\s+0\s+0\s+0\s+0\s+0\s+0\s+0\s+-$/m);
    expect(verified.stdout).toMatch(/^target\s+b\s+yes\s+5\s+0\s+0\s+0\s+0\s+0\s+0\s+-$/m);
    expect(verified.stdout).toContain("consistent:");
    const report = await json(["verify", id!]);
    expect(report).toMatchObject({ consistent: true, problems: [], target: { shard: "b" } });
    expect(report.migration.state).toBe("MIGRATION_STATE_COMPLETED");
  }, 120_000);

  test("verify exits 5 while a shard of the migration does not answer; audit lists the changes", async () => {
    const moved = await codeq(["assign", "cli.verify", "--to", "c", "--wait", "--json"]);
    expect(moved.code).toBe(0);
    const id = JSON.parse(moved.stdout).migrations[0].id as string;
    const c = cluster.shards[2]!;
    await c.worker.stop();
    try {
      const r = await codeq(["verify", id]);
      expect(r.code).toBe(5);
      expect(r.stdout).toMatch(/^target\s+c\s+yes\s+-/m);
      expect(r.stdout).toMatch(/^problem: shard c did not answer/m);
      // shards --check says so too, for scripts; without --check the table exits 0
      const checked = await codeq(["shards", "--check"]);
      expect(checked).toMatchObject({ code: 5, stderr: "not all shards are well: c\n" });
      expect((await codeq(["shards"])).code).toBe(0);
    } finally {
      await c.restartWorker();
    }
    await until(async () => (await codeq(["verify", id])).code === 0);
    await until(async () => (await codeq(["shards", "--check"])).code === 0);

    const audit = await codeq(["audit", "--limit", "2"]);
    expect(audit.code).toBe(0);
    const [header, ...rows] = audit.stdout.trimEnd().split("\n");
    expect(header).toMatch(/^TIME\s+ACTOR\s+ACTION\s+VERSION\s+SUMMARY$/);
    // the newest two (this test's move); a note on stderr that there are more
    expect(rows).toHaveLength(2);
    expect(audit.stderr.trimEnd()).toBe("more changes than --limit 2");
    expect(audit.stdout).toMatch(/MigrationCompleted\s+\d+ → \d+/);
    const { events } = await json(["audit"]);
    expect(events.map((e: any) => e.action)).toEqual(
      expect.arrayContaining(["AssignCommand", "MigrationCompleted"]),
    );
    expect(events.find((e: any) => e.action === "AssignCommand").summary).toContain(id);
  }, 120_000);

  test("assign --wait exits 4 when the migration is aborted", async () => {
    // three leased tasks keep the migration from completing until it is aborted
    const channel: Channel = createChannel(router);
    try {
      const queue = createClient(QueueServiceDefinition, channel, {
        "*": { metadata: new Metadata({ "x-codeq-tenant": "default" }) },
      });
      await queue.enqueueBatch({ tasks: [1, 2, 3].map(() => ({ command: "cli.abort" })) });
      const held = await queue.lease({
        commands: ["cli.abort"],
        maxTasks: 3,
        leaseDurationMs: 120_000,
      });
      expect(held.tasks).toHaveLength(3);

      const waiting = codeq(["assign", "cli.abort", "--to", "c", "--wait"]);
      let id = "";
      await until(async () => {
        const { migrations } = await json(["migrations", "--command", "cli.abort"]);
        id = migrations[0]?.id ?? "";
        return id !== "";
      });
      const aborted = await codeq(["abort", id]);
      expect(aborted.code).toBe(0);
      expect(aborted.stdout).toContain(`migration ${id} (cli.abort) is ABORTING`);
      const waited = await waiting;
      expect(waited.code).toBe(4);
      expect(waited.stdout).toContain(`migration ${id} ABORTED: cli.abort is back on a`);
      // aborting it again (its first answer lost, say) answers it as it is
      const again = await codeq(["abort", id]);
      expect(again.code).toBe(0);
      expect(again.stdout).toContain(`migration ${id} (cli.abort) is ABORTED`);
    } finally {
      channel.close();
    }
  }, 120_000);

  test("enqueue --count over several batches prints every id once; --json is one document", async () => {
    const plain = await codeq(["enqueue", "cli.many", "--count", "2500"]);
    expect(plain.code).toBe(0);
    const ids = plain.stdout.trim().split("\n");
    expect(ids).toHaveLength(2500);
    expect(new Set(ids).size).toBe(2500);
    const { results } = await json<{ results: { taskId: string; status: { code: number } }[] }>([
      "enqueue",
      "cli.many",
      "--count",
      "2100",
    ]);
    expect(results).toHaveLength(2100);
    expect(results.every((r) => r.status.code === 0 && r.taskId !== "")).toBe(true);
    const [stats] = await json(["stats", "cli.many"]);
    expect(stats.total).toMatchObject({ ready: 4600 });
  }, 120_000);

  test("enqueue --count stopped by Ctrl-C exits 130 after the batch under way, every stored id printed", async () => {
    const { child, stdout, stderr, exited } = started([
      "enqueue",
      "cli.stop-enq",
      "--count",
      "10000000",
    ]);
    try {
      await until(async () => stdout().split("\n").length > 1000);
      child.kill("SIGINT");
      expect(await exited).toBe(130);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
    const ids = stdout().trim().split("\n");
    expect(new Set(ids).size).toBe(ids.length);
    expect(stderr()).toContain("stopping after the batch under way; Ctrl-C again quits at once");
    expect(stderr()).toContain(
      `interrupted: stopped after ${ids.length} of 10000000 enqueued (their ids are printed)`,
    );
    const [stats] = await json(["stats", "cli.stop-enq"]);
    expect(stats.total.ready).toBe(ids.length);
  }, 120_000);

  test("enqueue --count whose reader goes away (codeq … | head) stops after the batch under way and says so", async () => {
    const { child, stdout, stderr, exited } = started([
      "enqueue",
      "cli.head",
      "--count",
      "10000000",
    ]);
    // the reader takes what it wanted and goes
    child.stdout.on("data", () => {
      if (stdout().split("\n").length > 3) child.stdout.destroy();
    });
    try {
      expect(await exited).toBe(130);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
    const stored = Number(
      /^stdout closed: stopped after (\d+) of 10000000 enqueued/m.exec(stderr())?.[1],
    );
    expect(stored).toBeGreaterThanOrEqual(1000);
    expect(stored).toBeLessThan(10_000_000);
    expect(stderr()).not.toContain("Ctrl-C");
    const [stats] = await json(["stats", "cli.head"]);
    expect(stats.total.ready).toBe(stored);
  }, 120_000);

  test("tail --max 2 --ack prints both tasks, acks them and exits 0", async () => {
    const ids = (await codeq(["enqueue", "cli.tail", "--count", "2", "--payload", "hello"])).stdout
      .trim()
      .split("\n");
    const r = await codeq(["tail", "cli.tail", "--max", "2", "--ack"]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines.map((l) => l.split(/\s+/)[0]).sort()).toEqual([...ids].sort());
    for (const l of lines) expect(l).toMatch(/^\S+ {2}a {2}attempt 1 {2}hello$/);
    const [stats] = await json(["stats", "cli.tail"]);
    expect(stats.total).toMatchObject({ ready: 0, leased: 0, completed: 2 });
  }, 120_000);

  test("tail stopped by Ctrl-C exits 130, not 0 as a --max that ran out does", async () => {
    await codeq(["enqueue", "cli.tail-stop", "--payload", "one"]);
    const { child, stdout, exited } = started(["tail", "cli.tail-stop", "--ack"]);
    try {
      await until(async () => stdout().includes("one"));
      child.kill("SIGINT");
      expect(await exited).toBe(130);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });

  test("tail --ack whose reader went away (codeq … | head) acks nothing it printed after", async () => {
    const stats = async () => (await json(["stats", "cli.tail-head"]))[0].total;
    await codeq(["enqueue", "cli.tail-head", "--payload", "first"]);
    const { child, stdout, exited } = started(["tail", "cli.tail-head", "--ack"]);
    try {
      await until(async () => stdout().includes("first"));
      await until(async () => (await stats()).completed === 1); // read, and acked
      child.stdout.destroy(); // the reader goes
      await codeq(["enqueue", "cli.tail-head", "--payload", "second"]);
      await exited; // on writing the second
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
    // released as the stream ended, not completed
    await until(async () => (await stats()).leased === 0);
    expect(await stats()).toMatchObject({ ready: 1, completed: 1 });
  }, 120_000);

  test("tail without --ack releases what it printed", async () => {
    await codeq(["enqueue", "cli.peek", "--payload", "x"]);
    const r = await codeq(["tail", "cli.peek", "--max", "1", "--json"]);
    expect(r.code).toBe(0);
    const task = JSON.parse(r.stdout.trim());
    expect(task.task).toMatchObject({
      command: "cli.peek",
      payload: "eA==",
      state: "TASK_STATE_LEASED",
    });
    const [stats] = await json(["stats", "cli.peek"]);
    expect(stats.total).toMatchObject({ ready: 1, leased: 0, completed: 0 });
  }, 120_000);

  test("dlq list, redrive and purge (purge only with --yes)", async () => {
    await deadTasks("cli.dlq", 3);
    const listed = await codeq(["dlq", "list", "cli.dlq"]);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/^ID\s+SHARD\s+ATTEMPTS\s+DIED\s+LAST ERROR\s+PAYLOAD$/m);
    expect(listed.stdout.match(/ a +1 .* boom +p\d$/gm)).toHaveLength(3);

    const refused = await codeq(["dlq", "purge", "cli.dlq"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("add --yes");
    expect((await json(["stats", "cli.dlq"]))[0].total.dead).toBe(3);

    const redriven = await codeq(["dlq", "redrive", "cli.dlq", "--max", "1"]);
    expect(redriven).toMatchObject({ code: 0, stdout: "redrove 1 dead tasks; 2 remain\n" });
    const purged = await codeq(["dlq", "purge", "cli.dlq", "--yes"]);
    expect(purged).toMatchObject({ code: 0, stdout: "purged 2 dead tasks; 0 remain\n" });
    expect((await json(["stats", "cli.dlq"]))[0].total).toMatchObject({ ready: 1, dead: 0 });
  }, 120_000);

  test("dlq redrive at a low rate walks the DLQ in calls that each end within the deadline", async () => {
    await deadTasks("cli.slow", 4);
    // one task a second, 2 s to a call: one task to a call, each paced to a second
    // (one call of all four would take 4 s at that rate and pass its deadline)
    const started = Date.now();
    const redriven = await codeq([
      "dlq",
      "redrive",
      "cli.slow",
      "--rate",
      "1",
      "--timeout",
      "2000",
    ]);
    expect(redriven).toMatchObject({ code: 0, stdout: "redrove 4 dead tasks; 0 remain\n" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(3_900);
    // progress on stderr from the second call on (plain lines: stderr is no terminal)
    expect(redriven.stderr.trimEnd().split("\n")).toEqual([
      expect.stringMatching(/^dlq redrive: 25% {2}1\/4 tasks {2}[\d.]+\/s {2}RUNNING$/),
      expect.stringMatching(/^dlq redrive: 50% {2}2\/4 tasks /),
      expect.stringMatching(/^dlq redrive: 75% {2}3\/4 tasks /),
    ]);
    const tooFast = await codeq(["dlq", "redrive", "cli.slow", "--rate", "100001"]);
    expect(tooFast.code).toBe(1);
    // a rate that cannot move one task within half the deadline is refused, not tried
    const tooSlow = await codeq(["dlq", "redrive", "cli.slow", "--rate", "1", "--timeout", "1000"]);
    expect(tooSlow).toMatchObject({ code: 1, stderr: expect.stringContaining("raise either") });
  }, 120_000);

  test("dlq redrive stops at Ctrl-C after the call under way, says what it did and exits 130", async () => {
    await deadTasks("cli.stop", 4);
    // one task a call, each paced to a second; Ctrl-C while the walk goes on
    const child = spawn(
      process.execPath,
      [BIN, "dlq", "redrive", "cli.stop", "--rate", "1", "--timeout", "2000"],
      { env: { ...baseEnv(), CODEQ_ROUTER: router } },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    // once the first call is done (its progress line), during the second
    await until(async () => stderr.includes("dlq redrive:"));
    child.kill("SIGINT");
    expect(await exited).toBe(130);
    const done = Number(/^redrove (\d) dead tasks; (\d) remain$/m.exec(stdout)?.[1]);
    expect(done).toBeGreaterThanOrEqual(1);
    expect(done).toBeLessThan(4);
    expect(stdout).toBe(`redrove ${done} dead tasks; ${4 - done} remain\n`);
    expect(stderr).toContain("stopping after the call under way; Ctrl-C again quits at once");
    expect(stderr).toContain(`interrupted: stopped after ${done} tasks; run it again for the rest`);
    expect((await json(["stats", "cli.stop"]))[0].total).toMatchObject({
      ready: done,
      dead: 4 - done,
    });
  }, 120_000);

  test("exit codes: 2 refused, 1 usage, 3 unreachable", async () => {
    const notFound = await codeq(["abort", "nope"]);
    expect(notFound.code).toBe(2);
    expect(notFound.stderr).toBe("NOT_FOUND: no migration nope\n");

    const unknown = await codeq(["frobnicate"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("codeq: unknown command: frobnicate");

    const badFlag = await codeq(["shards", "--bogus"]);
    expect(badFlag.code).toBe(1);
    expect(badFlag.stderr.split("\n")[0]).toBe("codeq: unknown option --bogus");

    const missing = await codeq(["assign", "X"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("missing --to SHARD");

    const unreachable = await codeq(["--router", "127.0.0.1:1", "shards"]);
    expect(unreachable.code).toBe(3);
    expect(unreachable.stderr).toMatch(/^UNAVAILABLE: /);
    expect(unreachable.stdout).toBe("");
  }, 120_000);

  test("shard add, state, default and remove change the map; refusals exit 2", async () => {
    const added = await codeq(["shard", "add", "z", "127.0.0.1:9", "--draining"]);
    expect(added.code).toBe(0);
    expect(added.stdout).toMatch(/^shard z \(127\.0\.0\.1:9\) added; map version \d+/);
    const again = await codeq(["shard", "add", "z", "127.0.0.1:9"]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/^ALREADY_EXISTS: /);
    const map = JSON.parse((await codeq(["map", "--json"])).stdout);
    expect(JSON.stringify(map)).toContain('"z"');
    // z cannot be asked whether it is empty (nothing listens there): refused
    const refused = await codeq(["shard", "remove", "z"]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/^FAILED_PRECONDITION: /);
    expect((await codeq(["shard", "remove", "a"])).code).toBe(2); // the default shard
    expect((await codeq(["shard", "remove", "z", "--to", "a"])).code).toBe(1); // --to needs --lost
    // states and the default
    const active = await codeq(["shard", "state", "z", "active"]);
    expect(active.code).toBe(0);
    expect(active.stdout).toMatch(/^shard z is active; map version \d+/);
    expect((await codeq(["shard", "state", "z", "idle"])).code).toBe(1);
    const defaultDraining = await codeq(["shard", "state", "a", "draining"]);
    expect(defaultDraining.code).toBe(2);
    expect(defaultDraining.stderr).toContain("make another shard the default first");
    const already = await codeq(["shard", "default", "a"]);
    expect(already.code).toBe(0);
    expect(already.stdout).toMatch(/^shard a is the default already; map version \d+/);
    const dry = await codeq(["shard", "default", "b", "--dry-run"]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/^dry run: the default would go a → b; pinned to a: /);
    expect((await codeq(["shard", "default", "z"])).code).toBe(2); // nothing serves there
    // nothing is routed to z: removed as lost without --to
    const lost = await codeq(["shard", "remove", "z", "--lost"]);
    expect(lost.code).toBe(0);
    expect(lost.stdout).toMatch(/^shard z removed as lost; map version \d+/);
    expect(JSON.stringify(JSON.parse((await codeq(["map", "--json"])).stdout))).not.toContain(
      '"z"',
    );
  }, 120_000);

  test("--help documents the commands, identity (a token, or development identity), TLS and the exit codes", async () => {
    const r = await codeq(["--help"]);
    expect(r.code).toBe(0);
    for (const word of [
      "shards",
      "assign",
      "dlq purge",
      "tail",
      "--token-file FILE",
      "CODEQ_TOKEN",
      "development identity on",
      "--tls-ca FILE",
      "Exit codes",
    ])
      expect(r.stdout).toContain(word);
    const assign = await codeq(["assign", "--help"]);
    expect(assign.code).toBe(0);
    expect(assign.stdout).toContain(
      "Usage: codeq assign COMMAND --to SHARD [--tenant T] [--dry-run] [--wait]",
    );
  }, 120_000);
});
