import { createChannel, createClient, Status } from "nice-grpc";
import { HealthDefinition, HealthServiceImpl } from "nice-grpc-server-health";
import { startGrpcServer } from "./grpc-server";

describe("startGrpcServer", () => {
  it("listens on an OS-chosen port, serves calls, and stops", async () => {
    const health = HealthServiceImpl();
    const srv = await startGrpcServer((s) => s.add(HealthDefinition, health));
    expect(srv.port).toBeGreaterThan(0);
    const channel = createChannel(srv.address);
    const client = createClient(HealthDefinition, channel);
    const res = await client.check({ service: "" });
    expect(res.status).toBe(1); // SERVING
    await expect(client.check({ service: "nope" })).rejects.toMatchObject({
      code: Status.NOT_FOUND,
    });
    channel.close();
    await srv.stop();

    const after = createChannel(srv.address);
    await expect(
      createClient(HealthDefinition, after).check(
        { service: "" },
        { signal: AbortSignal.timeout(500) },
      ),
    ).rejects.toBeInstanceOf(Error);
    after.close();
  });
});
