import { TASK_FIELDS_MAX_BYTES } from "@codeq/wire";
import { loadRouterConfig } from "./config";

describe("router configuration", () => {
  const MIB = 1024 * 1024;
  const cap = (bytes: number, max?: number) =>
    loadRouterConfig({
      CODEQ_ROUTER_PAYLOAD_CAP_BYTES: String(bytes),
      ...(max === undefined ? {} : { CODEQ_ROUTER_MAX_MESSAGE_BYTES: String(max) }),
    });

  it("refuses a payload cap that a request of maxMessageBytes cannot carry", () => {
    expect(loadRouterConfig({})).toMatchObject({ payloadCapBytes: MIB, maxMessageBytes: 16 * MIB });
    const most = 16 * MIB - TASK_FIELDS_MAX_BYTES;
    expect(cap(most).payloadCapBytes).toBe(most);
    expect(() => cap(most + 1)).toThrow(
      /CODEQ_ROUTER_PAYLOAD_CAP_BYTES \(payloadCapBytes\): payloadCapBytes \(\d+\) does not fit maxMessageBytes \(16777216\): an enqueue of a task that large needs requests of up to 16777217 bytes; raise maxMessageBytes to at least 16777217, or lower payloadCapBytes to at most \d+/,
    );
    expect(cap(32 * MIB, 33 * MIB).payloadCapBytes).toBe(32 * MIB);
  });
});
