/** Sample maps and small helpers shared by this package's tests. */
import type { ChangeInfo } from "../source";
import type { ShardMapDraft } from "../shard-map";

/** A valid draft: shards a, b, c (c draining), default a, SEND_EMAIL on b, acme's SEND_EMAIL on c. */
export function draft(overrides: Partial<ShardMapDraft> = {}): ShardMapDraft {
  return {
    shards: {
      a: { endpoint: "127.0.0.1:7401", state: "active" },
      b: { endpoint: "127.0.0.1:7402", state: "active" },
      c: { endpoint: "shard-c.codeq.svc:7403", state: "draining" },
    },
    defaultShard: "a",
    commands: { SEND_EMAIL: "b" },
    tenants: { "SEND_EMAIL/acme": "c" },
    migrations: [],
    ...overrides,
  };
}

export function change(summary = "test change", actor = "tester", action = "Test"): ChangeInfo {
  return { actor, action, summary };
}

/** Polls `predicate` every 5 ms until it holds; fails after `timeoutMs`. */
export async function waitFor(
  predicate: () => boolean,
  timeoutMs = 2_000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
