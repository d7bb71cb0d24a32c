import { fromTsProtoServiceDefinition } from "nice-grpc/lib/service-definitions/ts-proto";
import { LeaseStreamResponse, QueueServiceDefinition, sentAsGiven } from "./index";

const response: LeaseStreamResponse = {
  tasks: {
    tasks: [
      {
        task: {
          id: "01HZY3Q5V8W2N7K4M6P9R1T3XA",
          command: "SEND_EMAIL",
          tenant: "acme",
          payload: Buffer.from("hello"),
          priority: 3,
          state: 3,
          attempts: 1,
          maxAttempts: 5,
          runAtMs: 1_733_000_000_000,
          createdAtMs: 1_733_000_000_000,
          updatedAtMs: 1_733_000_000_100,
          idempotencyKey: "",
          headers: { trace: "abc" },
          lastError: "",
          result: Buffer.alloc(0),
          backoff: { kind: 3, baseMs: 1000, maxMs: 60_000, jitter: true },
          shard: "a",
          leaseDeadlineMs: 1_733_000_030_100,
        },
        leaseToken: "c1~a~SEND_EMAIL~acme~01HZY3Q5V8W2N7K4M6P9R1T3XA~1~abc",
        leaseDeadlineMs: 1_733_000_030_100,
      },
    ],
  },
};

describe("sentAsGiven", () => {
  const given = sentAsGiven(QueueServiceDefinition, "responseType", ["leaseStream"]);
  const serialize = (d: typeof QueueServiceDefinition | typeof given) =>
    fromTsProtoServiceDefinition(d).leaseStream!.responseSerialize;

  it("drops the copy for the named methods only, on the side named", () => {
    expect("fromPartial" in given.methods.leaseStream.responseType).toBe(false);
    expect(given.methods.leaseStream.requestType).toBe(
      QueueServiceDefinition.methods.leaseStream.requestType,
    );
    expect(given.methods.lease).toBe(QueueServiceDefinition.methods.lease);
    expect(QueueServiceDefinition.methods.leaseStream.responseType.fromPartial).toBeDefined();
  });

  it("puts the same bytes on the wire for a complete message", () => {
    const bytes = serialize(given)(response);
    expect(Buffer.from(bytes)).toEqual(Buffer.from(serialize(QueueServiceDefinition)(response)));
    expect(LeaseStreamResponse.decode(bytes)).toEqual(response);
  });

  it("keeps the reused writer clean after an encode that threw half-way, and after a large message", () => {
    const task = response.tasks!.tasks[0]!;
    const broken = { tasks: { tasks: [{ ...task, task: { ...task.task!, priority: -1 } }] } };
    expect(() => serialize(given)(broken)).toThrow();
    const large = {
      tasks: { tasks: [{ ...task, task: { ...task.task!, payload: Buffer.alloc(300_000, 1) } }] },
    };
    expect(LeaseStreamResponse.decode(serialize(given)(large))).toEqual(large);
    const bytes = serialize(given)(response);
    expect(Buffer.from(bytes)).toEqual(Buffer.from(serialize(QueueServiceDefinition)(response)));
  });
});
