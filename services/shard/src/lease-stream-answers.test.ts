import { LeaseStreamRequest } from "@codeq/proto";
import { Channel, type Identity } from "@codeq/server-kit";
import { LeaseStreamSession } from "./lease-stream";
import { Notifier } from "./notifier";
import type { QueueCore } from "./queue-core";

const tick = () => new Promise((r) => setTimeout(r, 5));

/** The part of QueueCore a stream that only acks (tokens of no lease) uses. */
function ackingCore(acked: { n: number }): QueueCore {
  return {
    config: { maxStreamCredits: 10_000, graceMs: 10_000, maxBatch: 1_000, maxResponseBytes: 4 << 20 },
    notifier: new Notifier(),
    streamOpened: () => undefined,
    interrupters: new Map(),
    leaseAsk: () => ({ commands: ["C"], allTenants: false, leaseMs: 30_000 }),
    topics: () => [{ queue: { command: "C", tenant: "t" } }],
    ack: async (_identity: Identity, items: readonly unknown[]) => {
      acked.n += items.length;
      return items.map(() => ({ code: 5, message: "not found" }));
    },
  } as unknown as QueueCore;
} // prettier-ignore

describe("a LeaseStream whose worker sends without reading its answers", () => {
  it("is read no further while 64 answers wait, and again once they are taken", async () => {
    const acked = { n: 0 };
    const never = new AbortController();
    const session = new LeaseStreamSession(
      ackingCore(acked),
      { tenant: "t" } as Identity,
      never.signal,
      never.signal,
    );
    const requests = new Channel<LeaseStreamRequest>();
    const out = session.run(requests);
    requests.push(LeaseStreamRequest.fromPartial({ subscribe: { commands: ["C"] } }));
    expect((await out.next()).value?.subscribed).toBeDefined();
    for (let i = 0; i < 5_000; i++)
      requests.push(LeaseStreamRequest.fromPartial({ requestId: i + 1, acks: [{ leaseToken: `x-${i}` }] }));
    for (let i = 0; i < 20; i++) await tick();
    // the answers waiting are bounded, and so is what was read to make them
    expect(acked.n).toBe(64);
    // the worker reads: the session reads on
    for (let i = 0; i < 40; i++) expect((await out.next()).value?.settled).toBeDefined();
    for (let i = 0; i < 5; i++) await tick();
    expect(acked.n).toBeGreaterThan(64);
    requests.close();
    await out.return(undefined);
  });
}); // prettier-ignore
