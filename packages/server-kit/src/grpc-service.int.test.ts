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
    let reached: () => void = () => undefined;
    const arrived = new Promise<void>((r) => (reached = r));
    const service = await startGrpcService({
      listen: "127.0.0.1:0",
      logger: createLogger("test", "silent"),
      register(server) {
        server.add(
          QueueServiceDefinition,
          withUnimplemented(QueueServiceDefinition, {
            async queueStats() {
              reached();
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
    await arrived; // in flight on the server

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

  it("ends health watches when it drains, NOT_SERVING said last, without waiting out the grace period", async () => {
    const service = await startGrpcService({
      listen: "127.0.0.1:0",
      logger: createLogger("test", "silent"),
      register: () => [],
    });
    const channel = createChannel(`127.0.0.1:${service.port}`);
    const health = createClient(HealthDefinition, channel);
    // one watch of the server, one of a service whose health the drain does not change
    service.health.setStatus("healthy", "codeq.ShardMap");
    let opened = 0;
    const watch = async (name: string) => {
      const seen: number[] = [];
      for await (const res of health.watch({ service: name })) {
        if (seen.length === 0) opened++;
        seen.push(res.status);
      }
      return seen;
    };
    const watches = [watch(""), watch("codeq.ShardMap")];
    // both watches are open on the server: each said SERVING
    while (opened < 2) await new Promise((r) => setTimeout(r, 10));
    const started = Date.now();
    await service.shutdown(5_000);
    expect(Date.now() - started).toBeLessThan(2_000);
    // SERVING (1), then NOT_SERVING (2), and the watch ends
    expect(await Promise.all(watches)).toEqual([
      [1, 2],
      [1, 2],
    ]);
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
