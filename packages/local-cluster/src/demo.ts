#!/usr/bin/env node
import * as os from "node:os";
import { installLeanAsyncBind } from "@codeq/common";
import { createChannel } from "nice-grpc";
import { listReflectedServices, type RedisServer } from "@codeq/testing";
import { DEMO_COMMANDS, runDemoWorkload, type WorkloadCounts } from "./demo-workload";
import { startLocalCluster } from "./local-cluster";

/**
 * The README's first command: brings up the local cluster and shows what it runs.
 * `--once` stops after the report (used by tests); otherwise it runs until Ctrl-C.
 */
async function main(): Promise<void> {
  installLeanAsyncBind(); // the demo producer's unary calls (async-bind.ts says why)
  const once = process.argv.includes("--once");
  // Signals from the first moment. While the cluster starts, exiting kills by PID what
  // was started so far and removes its data directories (the exit hook of
  // @codeq/testing). Once it runs, the first signal stops every process in order, by
  // PID, and the demo exits 0 (with --once, 128 + the signal: its checks were cut
  // short); a second signal while they stop exits at once, by the same hook. The
  // services run in process groups of their own, so a closed terminal (SIGHUP) or
  // Ctrl-\ (SIGQUIT) must stop them here too: they no longer get the terminal's.
  let stopDemo: (() => Promise<void>) | undefined;
  let stopping: Promise<void> | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    const code = 128 + os.constants.signals[signal];
    if (!stopDemo || stopping) process.exit(code);
    void stopDemo().then(() => process.exit(once ? code : 0));
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"] as const)
    process.on(signal, onSignal);
  console.log(
    "codeQ demo: starting a control store, 3 shards (redis-server + shard worker) and a router ...",
  );
  const cluster = await startLocalCluster({
    shards: 3,
    routers: 1,
    commands: { ...DEMO_COMMANDS },
    // the terminal's Ctrl-C reaches this process only, which stops the others in order
    ownGroups: true,
  });
  let beforeStop: () => Promise<void> = async () => undefined;
  // once: later calls share the stop under way
  stopDemo = () =>
    (stopping ??= (async () => {
      await beforeStop();
      console.log("\nstopping every process by PID ...");
      const unclean = await cluster.stop();
      console.log(
        unclean.length === 0 ? "stopped." : `stopped, not cleanly: ${unclean.join(", ")}`,
      );
    })());

  // what the demo started: the stores, then the services (the table, and the watch for
  // one that exits on its own)
  const stores: Array<[string, RedisServer]> = [
    ["control store", cluster.control],
    ...cluster.shards.map((sh): [string, RedisServer] => [`store ${sh.id}`, sh.store]),
  ];
  const services = [...cluster.shards.map((sh) => sh.worker), ...cluster.routers];
  const rows: string[][] = [["component", "pid", "address", "health", "gRPC services"]];
  for (const [name, store] of stores)
    rows.push([name, String(store.pid), `${store.host}:${store.port}`, "up", "-"]);
  for (const proc of services) {
    const channel = createChannel(proc.address);
    const reflected = await listReflectedServices(channel).finally(() => channel.close());
    rows.push([proc.name, String(proc.pid), proc.address, "SERVING", reflected.join(", ")]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const row of rows) console.log(row.map((cell, c) => cell.padEnd(widths[c]!)).join("  "));

  const mapping = Object.entries(DEMO_COMMANDS)
    .map(([command, shard]) => `${command} → ${shard}`)
    .join(", ");
  console.log(
    [
      "",
      `Shard map (in the control store): ${mapping}; every other command → a.`,
      `Demo: a producer sends EnqueueBatch of 99 tasks over the three commands to the router,`,
      `which splits each batch across the shards; a worker holds one LeaseStream to the router`,
      `for all three commands, fanned in from every shard, and acks each pushed batch.`,
      "",
    ].join("\n"),
  );

  const counts: WorkloadCounts = { enqueued: 0, acked: 0, ackedByShard: {} };
  const stopWorkload = new AbortController();
  const workload = runDemoWorkload(
    cluster.routers[0]!.address,
    counts,
    stopWorkload.signal,
    (who, err) =>
      console.error(`demo ${who}: ${(err as Error).message ?? String(err)}; trying again`),
  );
  // every process the demo started, by name: one that exits on its own stops the demo
  const processes = (): Array<[string, number | undefined, string]> => [
    ...stores.map(([name, store]): [string, number | undefined, string] => [
      name,
      store.pid,
      `its log: ${store.dataDir}/redis.log`,
    ]),
    ...services.map((proc): [string, number | undefined, string] => [
      proc.name,
      proc.pid,
      proc.logs,
    ]),
  ];
  let last = { ...counts };
  const report = setInterval(() => {
    const gone = processes().find(([, pid]) => pid === undefined);
    if (gone && !stopping) {
      console.error(`\n${gone[0]} exited on its own; stopping the demo.\n${gone[2]}`.trimEnd());
      void stopDemo!().then(() => process.exit(1));
      return;
    }
    const perShard = Object.keys(counts.ackedByShard)
      .sort()
      .map((id) => `${id} ${counts.ackedByShard[id]}`)
      .join(", ");
    console.log(
      `via router: enqueued ${counts.enqueued} (+${counts.enqueued - last.enqueued}/s)  acked ${counts.acked} (+${counts.acked - last.acked}/s)  acked by shard: ${perShard}`,
    );
    last = { ...counts, ackedByShard: { ...counts.ackedByShard } };
  }, 1000);
  beforeStop = async () => {
    clearInterval(report);
    stopWorkload.abort();
    await workload;
  };

  if (once) {
    await new Promise((r) => setTimeout(r, 3_000));
    await stopDemo!();
    const silent = cluster.shards.filter((sh) => !counts.ackedByShard[sh.id]);
    if (silent.length > 0)
      throw new Error(
        `the demo worker received no task from shard ${silent.map((sh) => sh.id).join(", ")}`,
      );
    return;
  }
  console.log("Press Ctrl-C to stop.\n");
  await new Promise(() => undefined);
}

main().catch((err: unknown) => {
  console.error("codeq demo failed:", err);
  process.exit(1);
});
