import { Redis } from "ioredis";
import { RedisServer } from "@codeq/testing";
import { ManualClock } from "../clock";
import { QueueEngine } from "../engine";
import type { EngineOptions } from "../engine-context";
import type { QueueRef } from "../keys";

/** One redis-server per test file, a fresh key prefix and manual clock per engine. */
export interface EngineFixture {
  readonly server: RedisServer;
  /** A new engine on its own connection, own key prefix, and a manual clock. */
  engine(
    options?: Partial<EngineOptions>,
  ): Promise<{ engine: QueueEngine; clock: ManualClock; redis: Redis; prefix: string }>;
  close(): Promise<void>;
}

let counter = 0;

export async function engineFixture(): Promise<EngineFixture> {
  const server = await RedisServer.start();
  const connections: Redis[] = [];
  return {
    server,
    async engine(options = {}) {
      const redis = server.client();
      connections.push(redis);
      const clock = (options.clock as ManualClock | undefined) ?? new ManualClock();
      const prefix = `${server.keyPrefix}-${++counter}`;
      const engine = await QueueEngine.open(redis, {
        shard: "a",
        keyPrefix: prefix,
        clock,
        random: () => 0.5,
        ...options,
      });
      return { engine, clock, redis, prefix };
    },
    async close() {
      for (const c of connections) c.disconnect();
      await server.stop();
    },
  };
}

export const Q: QueueRef = { command: "SEND_EMAIL", tenant: "acme" };
export const payload = (text: string) => Buffer.from(text);
