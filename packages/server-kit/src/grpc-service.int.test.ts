import { createChannel, createClient, Status } from "nice-grpc";
import { HealthDefinition } from "nice-grpc-server-health";
import { QueueServiceDefinition } from "@codeq/proto";
import { listReflectedServices, withUnimplemented } from "@codeq/testing";
import { startGrpcService } from "./grpc-service";
import { createLogger } from "./logger";

describe("startGrpcService", () => {
  it("serves health and reflection, then drains: NOT_SERVING, in-flight call finished, stopped", async () => {
    let release: () => void = () => undefined;
    const inFlight = new Promise<void>((r) => (release = r));
    const service = await startGrpcService({
      listen: "127.0.0.1:0",
      logger: createLogger("test", "silent"),
      register(server) {
        server.add(
          QueueServiceDefinition,
          withUnimplemented(QueueServiceDefinition, {
            async queueStats() {
              await inFlight;
              return { total: undefined, shards: [], unavailableShards: [] };
            },
          }),
        );
        return [QueueServiceDefinition.fullName];
      },
    });
    const channel = createChannel(`127.0.0.1:${service.port}`);
    const health = createClient(HealthDefinition, channel);
    expect(service.lifecycle.state).toBe("serving");
    expect((await health.check({ service: "codeq.v1.QueueService" })).status).toBe(1);
    expect(await listReflectedServices(channel)).toEqual([
      "codeq.v1.QueueService",
      "grpc.health.v1.Health",
    ]);

    const queue = createClient(QueueServiceDefinition, channel);
    await expect(queue.enqueue({ command: "X" })).rejects.toMatchObject({
      code: Status.UNIMPLEMENTED,
    });
    const slow = queue.queueStats({ command: "X" });
    await new Promise((r) => setTimeout(r, 50));

    const stopping = service.shutdown(5_000);
    expect(service.lifecycle.state).toBe("draining");
    expect(service.lifecycle.signal.aborted).toBe(true);
    expect(service.health.getStatus()).toBe("unhealthy");
    release();
    await expect(slow).resolves.toMatchObject({ shards: [] });
    await stopping;
    expect(service.lifecycle.state).toBe("stopped");
    channel.close();
  });

  it("forces the shutdown once the grace period is over", async () => {
    const service = await startGrpcService({
      listen: "127.0.0.1:0",
      logger: createLogger("test", "silent"),
      register(server) {
        server.add(
          QueueServiceDefinition,
          withUnimplemented(QueueServiceDefinition, {
            queueStats: () => new Promise(() => undefined),
          }),
        );
        return [QueueServiceDefinition.fullName];
      },
    });
    const channel = createChannel(`127.0.0.1:${service.port}`);
    const hung = createClient(QueueServiceDefinition, channel).queueStats({ command: "X" });
    hung.catch(() => undefined);
    await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    await service.shutdown(200);
    expect(Date.now() - started).toBeLessThan(3_000);
    await expect(hung).rejects.toMatchObject({ code: Status.CANCELLED });
    channel.close();
  });
});
