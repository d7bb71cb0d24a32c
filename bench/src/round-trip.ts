import { spawn } from "node:child_process";
import * as net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { percentile } from "./measure";
import { processCpuSeconds } from "./process-cpu";

/**
 * What one round trip between two processes over loopback TCP costs on this machine,
 * paced as the services' messages are (each side asleep until the other's message
 * wakes it). Every message a shard worker or router handles pays for such wake-ups;
 * on some virtual machines they cost ten times what they do on bare metal, which
 * moves every latency and CPU figure, so each result file records this one.
 */
export interface RoundTrip {
  /** CPU of both processes per round trip, µs (the sender's timer wake-up included). */
  readonly cpuMicros: number;
  /** Median time from write to reply, µs. */
  readonly latencyP50Micros: number;
}

/** An echo server on a free loopback port that prints its port, then echoes every byte. */
const ECHO = `require("net").createServer((s) => s.on("data", (d) => s.write(d)))
  .listen(0, "127.0.0.1", function () { console.log(this.address().port); });`;

/** Runs `rounds` round trips, one every `intervalMs`, against an echo child process. */
export async function measureRoundTrip(rounds = 500, intervalMs = 2): Promise<RoundTrip> {
  const child = spawn(process.execPath, ["-e", ECHO], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once("error", reject);
      child.stdout.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
    });
    const socket = net.connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) =>
      socket.once("connect", resolve).once("error", reject),
    );
    socket.setNoDelay(true);
    let replied: (() => void) | undefined;
    socket.on("data", () => replied?.());
    const message = Buffer.alloc(64, "r");
    const trip = async () => {
      const start = performance.now();
      const reply = new Promise<void>((resolve) => (replied = resolve));
      socket.write(message);
      await reply;
      return (performance.now() - start) * 1000;
    };
    for (let i = 0; i < 20; i++) await trip(); // warm-up
    const [mine, theirs] = [process.cpuUsage(), processCpuSeconds(child.pid!)];
    const latencies: number[] = [];
    for (let i = 0; i < rounds; i++) {
      await sleep(intervalMs);
      latencies.push(await trip());
    }
    const used = process.cpuUsage(mine);
    const childSeconds = processCpuSeconds(child.pid!) - theirs;
    socket.destroy();
    latencies.sort((a, b) => a - b);
    return {
      cpuMicros: Math.round((used.user + used.system + childSeconds * 1e6) / rounds),
      latencyP50Micros: Math.round(percentile(latencies, 0.5)),
    };
  } finally {
    child.kill();
  }
}
