#!/usr/bin/env node
import { createChannel } from "nice-grpc";
import { listReflectedServices } from "@codeq/testing";
import { startLocalCluster } from "./local-cluster";

/**
 * The README's first command: brings up the local cluster and shows what it runs.
 * `--once` stops after the report (used by tests); otherwise it runs until Ctrl-C.
 */
async function main(): Promise<void> {
  const once = process.argv.includes("--once");
  console.log(
    "codeQ demo: starting a control store, 3 shards (redis-server + shard worker) and a router ...",
  );
  const cluster = await startLocalCluster({ shards: 3, routers: 1 });
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    console.log("\nstopping every process by PID ...");
    await cluster.stop();
    console.log("stopped.");
  };

  const rows: string[][] = [["component", "pid", "address", "health", "gRPC services"]];
  rows.push([
    "control store",
    String(cluster.control.pid),
    `${cluster.control.host}:${cluster.control.port}`,
    "up",
    "-",
  ]);
  for (const shard of cluster.shards) {
    rows.push([
      `store ${shard.id}`,
      String(shard.store.pid),
      `${shard.store.host}:${shard.store.port}`,
      "up",
      "-",
    ]);
  }
  for (const proc of [...cluster.shards.map((s) => s.worker), ...cluster.routers]) {
    const channel = createChannel(proc.address);
    const services = await listReflectedServices(channel).finally(() => channel.close());
    rows.push([proc.name, String(proc.pid), proc.address, "SERVING", services.join(", ")]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const row of rows) console.log(row.map((cell, c) => cell.padEnd(widths[c]!)).join("  "));

  console.log(
    [
      "",
      "What runs today: every process above is real and answers gRPC health and reflection.",
      "Not yet: the queue itself. The shard engine (issue #3), the QueueService on each shard",
      "(issue #4) and routing over the shard map (issue #5) fill in this demo with a producer",
      "and a worker whose traffic spreads across the shards.",
    ].join("\n"),
  );

  if (once) {
    await stop();
    return;
  }
  console.log("\nPress Ctrl-C to stop.");
  const onSignal = () => void stop().then(() => process.exit(0));
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  await new Promise(() => undefined);
}

main().catch((err: unknown) => {
  console.error("codeq demo failed:", err);
  process.exit(1);
});
