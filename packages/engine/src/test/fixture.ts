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

/** Registers a fixture for the enclosing describe block (one redis-server per file). */
export function useEngineFixture(): () => EngineFixture {
  let fx: EngineFixture | undefined;
  beforeAll(async () => {
    fx = await engineFixture();
  });
  afterAll(async () => {
    await fx?.close();
  });
  return () => {
    if (!fx) throw new Error("fixture not started");
    return fx;
  };
}

/** Enqueues `n` tasks with payloads "<label>0", "<label>1", ... and returns their ids. */
export async function seed(
  engine: QueueEngine,
  n: number,
  spec: Partial<import("../task-spec").TaskSpec> = {},
  queue = Q,
  label = "t",
): Promise<string[]> {
  const out = await engine.enqueue(
    queue,
    Array.from({ length: n }, (_, i) => ({ payload: payload(`${label}${i}`), ...spec })),
  );
  return out.map((o) => o.id);
}

export const LEASE = { max: 100, leaseMs: 30_000 } as const;
