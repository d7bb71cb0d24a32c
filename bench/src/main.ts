#!/usr/bin/env node
import * as path from "node:path";
import { installLeanAsyncBind } from "@codeq/common";
import { RedisServer } from "@codeq/testing";
import { parseBenchArgs, USAGE, UsageError } from "./args";
import { environment } from "./environment";
import { formatRatios, formatResult, writeResult } from "./report";
import { crossRatios, type ScenarioResult } from "./scenario";
import { CROSS_RATIOS, SCENARIOS } from "./scenarios";

const RESULTS_DIR = path.join(__dirname, "..", "results");

/** Shows the running step: rewritten in place on a terminal, one line each otherwise. */
function progress(text: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K▸ ${text}`);
  else process.stderr.write(`▸ ${text}\n`);
}

function clearProgress(): void {
  if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
}

/** Node flags as the header prints them. */
const flagList = (flags: readonly string[]) => (flags.length > 0 ? flags.join(" ") : "(none)");

async function main(): Promise<void> {
  installLeanAsyncBind(); // as the services and the forked clients do (async-bind.ts)
  const args = parseBenchArgs(
    process.argv.slice(2),
    SCENARIOS.map((s) => s.name),
  );
  if (args.help) return void console.log(USAGE);
  if (args.list) {
    for (const s of SCENARIOS) console.log(`${s.name.padEnd(12)} ${s.summary}`);
    return;
  }
  progress("starting redis-server");
  // Always our own server, never CODEQ_TEST_REDIS_URL: numbers must not depend on a shared one.
  const server = await RedisServer.start({ spawnOnly: true });
  const stop = () => server.stop();
  const onSignal = (signal: NodeJS.Signals) => {
    clearProgress();
    console.error(`\n${signal}: stopping redis-server (pid ${server.pid}) ...`);
    void stop().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const admin = server.client();
    progress("measuring a loopback round trip");
    const env = await environment(admin).finally(() => admin.disconnect());
    console.log(
      `codeQ bench: node ${env.node}, redis-server ${env.redisServer} (pid ${server.pid}, port ${server.port}), ` +
        `${env.cpus} CPUs (load ${env.loadAverage1m}); ${args.warmupSeconds} s warm-up + ${args.seconds} s per variant\n` +
        `loopback round trip between two processes: ${env.roundTrip.latencyP50Micros} µs p50, ${env.roundTrip.cpuMicros} µs of CPU (each message the services handle pays for such wake-ups)\n` +
        `node flags: bench ${flagList(env.benchNodeFlags)}; services and forked clients ${flagList(env.serviceNodeFlags)}` +
        (env.leanAsyncBind ? "; bench, clients and services install leanBind (async-bind.ts)" : ""),
    );
    const results = new Map<string, ScenarioResult>();
    for (const name of args.scenarios) {
      const scenario = SCENARIOS.find((s) => s.name === name)!;
      const startedAt = new Date().toISOString();
      const result = await scenario.run({ options: args, server, progress });
      results.set(scenario.name, result);
      clearProgress();
      console.log(`\n${formatResult(scenario.name, result)}`);
      const file = writeResult(args.outDir ?? RESULTS_DIR, {
        scenario: scenario.name,
        startedAt,
        options: { seconds: args.seconds, warmupSeconds: args.warmupSeconds },
        environment: env,
        ...result,
      });
      console.log(`results: ${path.relative(process.cwd(), file)}`);
    }
    const cross = crossRatios(results, CROSS_RATIOS);
    if (cross.length > 0) console.log(`\nacross scenarios:\n${formatRatios(cross).join("\n")}`);
  } finally {
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
    await stop();
  }
}

main().catch((err: unknown) => {
  clearProgress();
  if (err instanceof UsageError) {
    console.error(`${err.message}\n\n${USAGE}`);
    process.exit(2);
  }
  console.error("bench failed:", err);
  process.exit(1);
});
