import type { ClientMiddlewareCall, MethodDescriptor } from "nice-grpc";
import { countRpcs } from "./count-rpcs";

const method = { path: "/codeq.v1.QueueService/X" } as MethodDescriptor;

async function* messages<T>(...items: T[]): AsyncGenerator<T> {
  yield* items;
}

async function drain<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** Runs the middleware over `call` as nice-grpc would, returning what it yields and returns. */
async function through<Req, Res>(call: ClientMiddlewareCall<Req, Res>, count: () => void) {
  const gen = countRpcs(count)(call, {});
  const yielded: Res[] = [];
  for (;;) {
    const step = await gen.next();
    if (step.done) return { yielded, returned: step.value };
    yielded.push(step.value);
  }
}

describe("countRpcs", () => {
  it("counts a unary call once and passes its answer through", async () => {
    let n = 0;
    const call = {
      method,
      requestStream: false,
      request: "req",
      responseStream: false,
      async *next(request: unknown) {
        return `answer to ${String(request)}`;
      },
    } as unknown as ClientMiddlewareCall<string, string>;
    const out = await through(call, () => n++);
    expect(out.returned).toBe("answer to req");
    expect(n).toBe(1);
  });

  it("counts every message sent and received on a bidirectional stream", async () => {
    let n = 0;
    const call = {
      method,
      requestStream: true,
      request: messages("a", "b", "c"),
      responseStream: true,
      async *next(requests: AsyncIterable<string>) {
        const sent = await drain(requests);
        yield `got ${sent.length}`;
        yield "bye";
      },
    } as unknown as ClientMiddlewareCall<string, string>;
    const out = await through(call, () => n++);
    expect(out.yielded).toEqual(["got 3", "bye"]);
    expect(n).toBe(5);
  });

  it("counts the one request of a server stream and each message of the answer", async () => {
    let n = 0;
    const call = {
      method,
      requestStream: false,
      request: "req",
      responseStream: true,
      async *next() {
        yield* ["x", "y", "z", "w"];
      },
    } as unknown as ClientMiddlewareCall<string, string>;
    await through(call, () => n++);
    expect(n).toBe(5);
  });

  it("counts the messages of a client stream and its one answer", async () => {
    let n = 0;
    const call = {
      method,
      requestStream: true,
      request: messages(1, 2),
      responseStream: false,
      async *next(requests: AsyncIterable<number>) {
        return (await drain(requests)).length;
      },
    } as unknown as ClientMiddlewareCall<number, number>;
    const out = await through(call, () => n++);
    expect(out.returned).toBe(2);
    expect(n).toBe(3);
  });
});
