import { setTimeout as sleep } from "node:timers/promises";
import { createChannel, createClient, Metadata } from "nice-grpc";
import {
  AdminServiceDefinition,
  internal,
  MigrationState,
  QueueServiceDefinition,
  TaskState,
} from "@codeq/proto";
import { startLocalCluster, type LocalCluster } from "./local-cluster";
import { Ledger, produce, RouterSet, work } from "./test/chaos-workload";

/**
 * Issue 6's chaos test: producers and stream workers run through two routers over
 * three shards while command CH is reassigned a → b → c → a and tenant t2 gets a
 * shard of its own; meanwhile the shard being drained is SIGKILLed mid-move and
 * restarted, one router is SIGKILLed, and the control store is restarted. At the
 * end every accepted task has been acked, no queue holds a leftover, no task was
 * ever held by two live leases, and every duplicate delivery is explained by a
 * lease that expired or whose stream ended.
 */

const COMMAND = "CH";
const LEASE_MS = 3_000;
let cluster: LocalCluster;

beforeAll(async () => {
  cluster = await startLocalCluster({
    shards: 3,
    routers: 2,
    env: {
      CODEQ_ROUTER_BREAKER_RESET_MS: "500",
      CODEQ_SHARD_MOVER_INTERVAL_MS: "100",
      CODEQ_SHARD_MOVER_BATCH: "100",
      CODEQ_SHARD_GRACE_MS: "2000",
    },
  });
}, 90_000);

afterAll(async () => {
  await cluster?.stop();
});

/** What `shard` says of task `id` of `tenant`: its state, or why it could not say. */
async function taskOn(
  shard: (typeof cluster.shards)[number],
  id: string,
  tenant: string,
): Promise<{ state?: TaskState; error?: string }> {
  const channel = createChannel(shard.address);
  const q = createClient(QueueServiceDefinition, channel, {
    "*": { metadata: cluster.shardMetadata(tenant) },
  });
  return q
    .getTask({ command: COMMAND, taskId: id })
    .then((r) => ({ state: r.task?.state }))
    .catch((err: unknown) => ({ error: (err as Error).message.slice(0, 80) }))
    .finally(() => channel.close());
}

/** True when some shard holds task `id` of `tenant` as COMPLETED. */
async function completedSomewhere(id: string, tenant: string): Promise<boolean> {
  for (const shard of cluster.shards)
    if ((await taskOn(shard, id, tenant)).state === TaskState.TASK_STATE_COMPLETED) return true;
  return false;
}

/** `id: shard=STATE …` for every shard that knows the task (`id: nowhere` if none does). */
async function whereIs(id: string, tenant: string): Promise<string> {
  const seen: string[] = [];
  for (const shard of cluster.shards) {
    const { state, error } = await taskOn(shard, id, tenant);
    if (state !== undefined) seen.push(`${shard.id}=${TaskState[state]}`);
    else if (error !== undefined && !error.includes("NOT_FOUND"))
      seen.push(`${shard.id}=error ${error}`);
  }
  return `${id} (${tenant}): ${seen.join(" ") || "nowhere"}`;
}

function adminOf(address: string) {
  const channel = createChannel(address);
  const client = createClient(AdminServiceDefinition, channel, {
    "*": { metadata: new Metadata({ "x-codeq-tenant": "ops", "x-codeq-roles": "admin" }) },
  });
  return { client, close: () => channel.close() };
}

test("reassignments under load with crashes lose nothing and never double-lease", async () => {
  const ledger = new Ledger();
  const alive = new Set(cluster.routers.map((r) => r.address));
  const routers = new RouterSet(() => [...alive]);
  const stop = new AbortController();
  const running = [
    produce(routers, ledger, COMMAND, "t1", stop.signal),
    produce(routers, ledger, COMMAND, "t1", stop.signal),
    produce(routers, ledger, COMMAND, "t2", stop.signal),
    work(routers, ledger, "w1", COMMAND, "t1", stop.signal, LEASE_MS),
    work(routers, ledger, "w2", COMMAND, "t1", stop.signal, LEASE_MS),
    work(routers, ledger, "w3", COMMAND, "t2", stop.signal, LEASE_MS),
    work(routers, ledger, "w4", COMMAND, "t2", stop.signal, LEASE_MS),
  ];
  const log: string[] = [];
  const admin = () => adminOf([...alive][0]!);

  /** Assigns (retrying while the control store is down or a migration runs), returns its id. */
  async function assign(shard: string, tenant = ""): Promise<string> {
    for (let attempt = 0; ; attempt++) {
      const a = admin();
      try {
        const res = await a.client.assignCommand({ command: COMMAND, tenant, shard });
        const id = res.migrations[0]?.id ?? "";
        log.push(`assign ${COMMAND}${tenant ? `/${tenant}` : ""} → ${shard}: ${id || "no-op"}`);
        return id;
      } catch (err) {
        if (attempt > 200) throw err;
        await sleep(100);
      } finally {
        a.close();
      }
    }
  }

  async function finished(id: string): Promise<number> {
    if (!id) return 0;
    const deadline = Date.now() + 60_000;
    for (;;) {
      const a = admin();
      const m = await a.client
        .getMigration({ id })
        .then((r) => r.migration)
        .catch(() => undefined)
        .finally(() => a.close());
      const state = m?.state;
      if (state === MigrationState.MIGRATION_STATE_COMPLETED) {
        const moved = m!.moved!;
        log.push(`${id} completed, moved ${moved.ready + moved.scheduled + moved.dead}`);
        return moved.ready + moved.scheduled + moved.dead;
      }
      if (Date.now() > deadline)
        throw new Error(`migration ${id} not finished: ${state}; ${log.join("; ")}`);
      await sleep(100);
    }
  }

  /** A backlog on the current owner so a move has work in flight when the crash comes. */
  async function backlog(): Promise<void> {
    const { client } = routers.next("t1");
    for (let i = 0; i < 5; i++) {
      const res = await client.enqueueBatch({
        tasks: Array.from({ length: 200 }, (_, j) => ({
          command: COMMAND,
          payload: Buffer.from(`backlog-${i}-${j}`),
          delayMs: 1_500,
        })),
      });
      for (const r of res.results) if (r.status?.code === 0) ledger.accepted.set(r.taskId, "t1");
    }
  }

  await sleep(1_000);
  // a → b, with a (the source) SIGKILLed mid-move and restarted
  await backlog();
  const ab = await assign("b");
  await sleep(30);
  await cluster.shards[0]!.worker.kill();
  log.push("SIGKILL shard a");
  await cluster.shards[0]!.restartWorker();
  log.push("restarted shard a");
  expect(await finished(ab)).toBeGreaterThan(0);

  // b → c, with router-1 SIGKILLed meanwhile
  await backlog();
  const bc = await assign("c");
  const victim = cluster.routers[0]!;
  ledger.killedRouters.set(victim.address, Date.now());
  alive.delete(victim.address);
  await victim.kill();
  log.push("SIGKILL router-1");
  await finished(bc);

  // t2 gets a shard of its own, with the control store restarted meanwhile
  const t2 = await assign("b", "t2");
  await cluster.control.kill();
  log.push("control store down");
  await sleep(1_500);
  await cluster.control.restart();
  log.push("control store back");
  await finished(t2);

  // c → a for everyone else
  await backlog();
  await finished(await assign("a"));

  await sleep(1_000);
  stop.abort();
  await Promise.all(running);

  // an ack whose answer was lost with its stream, or answered UNAVAILABLE, may still have
  // completed the task: ask the shards
  const resolveUnheard = async () => {
    for (const id of ledger.unheardAcks())
      if (await completedSomewhere(id, ledger.accepted.get(id)!)) ledger.ackedUnheard.add(id);
  };
  await resolveUnheard();
  // every accepted task is acked; wait for stragglers (expired leases, scheduled backlog)
  const waitUntil = Date.now() + 30_000;
  const missing = () => ledger.missing();
  if (missing().length > 0) {
    const stop2 = new AbortController();
    const drain = [
      work(routers, ledger, "d1", COMMAND, "t1", stop2.signal, LEASE_MS),
      work(routers, ledger, "d2", COMMAND, "t2", stop2.signal, LEASE_MS),
    ];
    while (missing().length > 0 && Date.now() < waitUntil) await sleep(200);
    stop2.abort();
    await Promise.all(drain);
    await resolveUnheard();
  }
  routers.close();

  const audit = ledger.audit();
  const duplicates = [...ledger.deliveries.values()].reduce((n, l) => n + l.length - 1, 0);
  console.log(
    `chaos: accepted ${ledger.accepted.size}, acked ${ledger.acked.size} (+${ledger.ackedUnheard.size} whose ack answer was lost or left open, found completed), refused enqueues ${ledger.refusedEnqueues}, ` +
      `duplicate deliveries ${duplicates} (lease expired ${audit.expired}, stream ended ${audit.released}); ${log.join("; ")}`,
  );
  // a missing task is named with where each shard says it is, to tell a loss from a straggler
  expect(await Promise.all(missing().map((id) => whereIs(id, ledger.accepted.get(id)!)))).toEqual(
    [],
  );
  expect(audit.violations).toEqual([]);
  expect(audit.expired + audit.released).toBe(duplicates);
  expect(ledger.accepted.size).toBeGreaterThan(1_000);

  // no queue holds a leftover, and no migration is left on the map
  const source = cluster.mapSource();
  const map = await source.get().finally(() => source.close());
  expect(map!.migrations).toEqual([]);
  for (const shard of cluster.shards) {
    const channel = createChannel(shard.address);
    const status = await createClient(internal.ShardServiceDefinition, channel, {
      "*": { metadata: cluster.shardMetadata() },
    })
      .listQueues({ command: COMMAND })
      .finally(() => channel.close());
    const held = status.queues.filter((q) => {
      const c = q.counts;
      return c !== undefined && c.ready + c.scheduled + c.leased + c.dead > 0;
    });
    expect(held).toEqual([]);
  }
}, 240_000);
