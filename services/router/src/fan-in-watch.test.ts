import type { Leg } from "./fan-in-leg";
import { ShardWatch, type WatchHost } from "./fan-in-watch";
import type { Routing } from "./routing";

const TIMEOUT_MS = 200;

/** A watch with real timers, over a leg whose shard answers its health check when `alive`. */
function watchOf(alive: boolean) {
  const gaveUp: string[] = [];
  const host: WatchHost = {
    routing: { config: { shardTimeoutMs: TIMEOUT_MS } } as Routing,
    ended: new AbortController().signal,
    later: (ms, fn) => {
      const timer = setTimeout(fn, ms);
      return () => clearTimeout(timer);
    },
    giveUp: (_leg, why) => gaveUp.push(why),
    lateAnswer: () => undefined,
  };
  // the part of a Leg the watch reads
  const leg = {
    held: false,
    readOnAt: 0,
    closed: false,
    channel: 0,
    conn: { alive: async () => alive },
  } as unknown as Leg;
  return { watch: new ShardWatch(host), leg, gaveUp };
}

const answerAfter = (ms: number) =>
  new Promise<string>((resolve) => setTimeout(() => resolve("answer"), ms));

describe("ShardWatch.answerOf", () => {
  test("time the leg's reading was held for the client is not counted against the shard", async () => {
    const { watch, leg, gaveUp } = watchOf(true);
    leg.held = true; // the client reads slowly: the answer waits behind pushes not read
    setTimeout(
      () => {
        leg.held = false;
        leg.readOnAt = Date.now();
      },
      2 * TIMEOUT_MS - 20,
    );
    expect(await watch.answerOf(leg, answerAfter(2.5 * TIMEOUT_MS), "a withdrawal")).toBe("answer");
    expect(gaveUp).toEqual([]);
  });

  test("a leg read through the whole wait: an alive shard's late answer is not waited for", async () => {
    const { watch, leg, gaveUp } = watchOf(true);
    expect(await watch.answerOf(leg, answerAfter(4 * TIMEOUT_MS), "a withdrawal")).toBeUndefined();
    expect(gaveUp).toEqual([]);
  });

  test("a leg read through the whole wait, its shard not answering a health check: given up", async () => {
    const { watch, leg, gaveUp } = watchOf(false);
    expect(await watch.answerOf(leg, answerAfter(4 * TIMEOUT_MS), "a withdrawal")).toBe("answer");
    expect(gaveUp).toEqual([
      `it answered neither a withdrawal nor a health check within ${TIMEOUT_MS} ms`,
    ]);
  });
});
