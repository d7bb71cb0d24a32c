import { ADMIN_RPCS, adminRpcs } from "./test/fuzz-admin-rpcs";
import { fuzz, fuzzCluster, testAfterwards } from "./test/fuzz-fixture";

/**
 * Bad input never hurts (Issue 7, item 5), AdminService: an operator's hostile input
 * answers clearly and changes nothing of the victim's (its queues stay on their shards,
 * its shards stay registered). The setup and the checks after every test are in
 * test/fuzz-fixture.ts.
 */

const fx = fuzzCluster();

describe("AdminService with hostile input from an admin", () => {
  test.each(ADMIN_RPCS)(
    "%s answers clearly and changes nothing of the victim's",
    async (name) => {
      await fuzz(fx, name, adminRpcs(fx)[name]!);
    },
    60_000,
  );
});

testAfterwards(fx);
