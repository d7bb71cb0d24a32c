import { createChannel, createClient, Status } from "nice-grpc";
import { freePort } from "@codeq/testing";
import { ForwardLane, forwardService, type Caller } from "./forward-lane";
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
