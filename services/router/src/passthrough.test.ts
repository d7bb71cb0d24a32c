import { LeaseResponse, LeaseStreamResponse } from "@codeq/proto";
import { countField, decoded, embedded, passThrough, Raw, routerQueueService } from "./passthrough";

const task = (id: string) => ({
  task: { id, payload: Buffer.from("p".repeat(40)), headers: { a: "b" } },
  leaseToken: `c1~a~X~t~${id}~1~abc`,
  leaseDeadlineMs: 1_800_000_000_000,
});

describe("messages passing through the router", () => {
  test("counts repeated fields and finds embedded messages without decoding", () => {
    const lease = LeaseResponse.encode(
      LeaseResponse.fromPartial({ tasks: [task("1"), task("2"), task("3")] }),
    ).finish();
    expect(countField(lease, 1)).toBe(3);
    expect(countField(new Uint8Array(0), 1)).toBe(0);
    const pushed = LeaseStreamResponse.encode(
      LeaseStreamResponse.fromPartial({ tasks: { tasks: [task("1"), task("2")] } }),
    ).finish();
    expect(countField(embedded(pushed, 2)!, 1)).toBe(2);
    const settled = LeaseStreamResponse.encode(
      LeaseStreamResponse.fromPartial({ settled: { requestId: 9, acks: [{ code: 0 }] } }),
    ).finish();
    expect(embedded(settled, 2)).toBeUndefined();
    // truncated bytes end the walk instead of throwing
    expect(countField(lease.subarray(0, lease.length - 5), 1)).toBe(2);
  });

  test("a Raw answer goes back as the very bytes, and decodes when read", () => {
    const bytes = LeaseResponse.encode(LeaseResponse.fromPartial({ tasks: [task("7")] })).finish();
    const raw = new Raw(bytes, LeaseResponse);
    const serialize = routerQueueService.lease!.responseSerialize;
    expect(serialize(passThrough(raw))).toBe(bytes);
    expect(decoded(passThrough(raw)).tasks[0]!.task!.id).toBe("7");
    // a built answer is encoded as usual
    const built = serialize({ tasks: [task("8")] });
    expect(LeaseResponse.decode(built).tasks[0]!.task!.id).toBe("8");
  });
});
