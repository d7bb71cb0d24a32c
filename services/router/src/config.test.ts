import { TASK_FIELDS_MAX_BYTES } from "@codeq/wire";
import { loadRouterConfig } from "./config";

describe("router configuration", () => {
  const MIB = 1024 * 1024;
  const cap = (bytes: number, max?: number) =>
    loadRouterConfig({
      CODEQ_ROUTER_PAYLOAD_CAP_BYTES: String(bytes),
      ...(max === undefined ? {} : { CODEQ_ROUTER_MAX_MESSAGE_BYTES: String(max) }),
    });

  it("refuses a request limit that cannot hold a task at the cap, or an ack's largest result", () => {
    expect(loadRouterConfig({})).toMatchObject({ payloadCapBytes: MIB, maxMessageBytes: 16 * MIB });
    const most = 16 * MIB - TASK_FIELDS_MAX_BYTES;
    expect(cap(most).payloadCapBytes).toBe(most);
    expect(() => cap(most + 1)).toThrow(
      /CODEQ_ROUTER_MAX_MESSAGE_BYTES \(maxMessageBytes\): maxMessageBytes \(16777216\) is too small for a task with a payload of payloadCapBytes \(\d+\) .* raise it to at least 16777217, or lower payloadCapBytes to at most \d+/,
    );
    expect(() => cap(1024, 1024 * 1024)).toThrow(/an ack with a result of 1048576 bytes/);
    expect(cap(32 * MIB, 33 * MIB).payloadCapBytes).toBe(32 * MIB);
  });

  it("takes admin tenants as a comma-separated list of tenant names", () => {
    expect(loadRouterConfig({ CODEQ_ROUTER_ADMIN_TENANTS: "ops, platform" }).adminTenants).toBe(
      "ops, platform",
    );
    for (const bad of ["ops,no such", ",", " , "])
      expect(() => loadRouterConfig({ CODEQ_ROUTER_ADMIN_TENANTS: bad })).toThrow(
        /CODEQ_ROUTER_ADMIN_TENANTS \(adminTenants\): adminTenants must be tenant names/,
      );
    expect(loadRouterConfig({}).adminTenants).toBe("");
  });
});
