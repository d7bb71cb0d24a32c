import {
  ClientError,
  createChannel,
  createClient,
  createServer,
  Status,
  type CallContext,
} from "nice-grpc";
import { freePort } from "@codeq/testing";
import { ForwardLane, forwardService, type Caller } from "./forward-lane";
import { forwardedRelease } from "./passthrough";
import { within } from "./test/cluster";

const caller: Caller = {
  tenant: "t1",
  principal: "w",
  roles: "worker",
  commands: undefined,
  mapVersion: 1,
};

/** A lane to an address nothing listens on, and what its give-backs reported lost. */
async function laneToNowhere() {
  const channel = createChannel(`127.0.0.1:${await freePort()}`);
  const lost: Array<{ leases: number; err: unknown }> = [];
  const lane = new ForwardLane(
    "a",
    createClient(forwardService, channel),
    2_000,
    10,
    (leases, err) => lost.push({ leases, err }),
  );
  return { lane, lost, close: () => channel.close() };
}

test.each([
  ["the shard cannot be reached", false],
  ["the lane is closed", true],
])("a give-back that does not reach the shard is reported: %s", async (_, closed) => {
  const { lane, lost, close } = await laneToNowhere();
  try {
    if (closed) lane.close();
    lane.giveBack(["c1~a~X~t1~tok1", "c1~a~X~t1~tok2"], caller);
    await within(4_000, () => lost.length > 0);
    expect(lost).toEqual([
      { leases: 2, err: expect.objectContaining({ code: Status.UNAVAILABLE }) },
    ]);
  } finally {
    lane.close();
    close();
  }
});

test("a call whose caller has already left is refused at once (CANCELLED), not left unsettled", async () => {
  const { lane, close } = await laneToNowhere();
  try {
    const gone = new AbortController();
    gone.abort();
    const call = forwardedRelease(["c1~a~X~t1~tok1"]);
    const outcome = lane.send(call, caller, true, gone.signal).then(
      () => "answered",
      (e: unknown) => e,
    );
    const unsettled = new Promise((r) => setTimeout(() => r("unsettled after 2 s"), 2_000));
    expect(await Promise.race([outcome, unsettled])).toMatchObject({ code: Status.CANCELLED });
  } finally {
    lane.close();
    close();
  }
});

/**
 * A shard worker that takes the Forward stream and never reads it (its store stalled,
 * every slot taken): what the router writes waits in the router once the HTTP/2
 * window is full.
 */
async function laneToDeafShard(timeoutMs: number, maxUnwrittenBytes: number) {
  const server = createServer();
  const deaf = {
    forward: {
      ...forwardService.forward,
      responseSerialize: (bytes: Uint8Array) => bytes,
    },
  };
  server.add(deaf, {
    async *forward(_requests: AsyncIterable<Uint8Array>, ctx: CallContext) {
      await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
    },
  } as never);
  const port = await server.listen("127.0.0.1:0");
  const channel = createChannel(`127.0.0.1:${port}`);
  const lane = new ForwardLane(
    "a",
    createClient(forwardService, channel),
    timeoutMs,
    10_000,
    () => undefined,
    maxUnwrittenBytes,
  );
  return {
    lane,
    close: async () => {
      lane.close();
      channel.close();
      await server.forceShutdown();
    },
  };
}

test("calls waiting to be written are bounded in bytes; those abandoned free theirs at once", async () => {
  const { lane, close } = await laneToDeafShard(500, 1024 * 1024);
  try {
    // 100 KB a call: the window takes some, the router holds at most 1 MiB more
    const call = forwardedRelease(["x".repeat(100 * 1024)]);
    const outcomes = Array.from({ length: 60 }, () =>
      lane.send(call, caller).then(
        () => "answered",
        (e: unknown) => e as ClientError,
      ),
    );
    const settled = await Promise.all(outcomes);
    const refused = settled.filter(
      (o): o is ClientError => o instanceof ClientError && o.code === Status.UNAVAILABLE,
    );
    expect(refused.length).toBeGreaterThan(0);
    expect(refused[0]!.details).toMatch(/bytes of calls are waiting to be written/);
    // the others waited and timed out, freeing the bytes they held: room again
    expect(
      settled.filter((o) => o instanceof ClientError && o.code === Status.DEADLINE_EXCEEDED),
    ).toHaveLength(60 - refused.length);
    const again = await lane.send(call, caller).catch((e: unknown) => e as ClientError);
    expect(again).toMatchObject({ code: Status.DEADLINE_EXCEEDED });
  } finally {
    await close();
  }
});
