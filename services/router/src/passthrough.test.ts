import fc from "fast-check";
import { Status } from "nice-grpc";
import {
  type AckItem,
  AckRequest,
  EnqueueBatchRequest,
  EnqueueBatchResponse,
  EnqueueRequest,
  EnqueueStreamResponse,
  internal,
  LeaseResponse,
  LeaseStreamRequest,
  LeaseStreamResponse,
  SettleResult,
} from "@codeq/proto";
import { leaseTokenShard } from "@codeq/engine";
import { MAX_RESULT_BYTES } from "@codeq/wire";
import * as P from "./test/fuzz-protobuf";
import { BatchBytes, batchCommands, readBatch } from "./batch-bytes";
import {
  forwardedBatch,
  forwardedCall,
  forwardedTask,
  readForwardAnswer,
  routerQueueService,
  shardQueueService,
  streamAnswer,
} from "./passthrough";
import { forwardedAcks, readSettled, settledAnswer, settledItems, StreamAcks } from "./stream-acks";
import { countField, decoded, embedded, passThrough, Raw } from "./wire-bytes";

/** A varint field and a string field, as protobuf writes them (small values only). */
const varintField = (field: number, value: number) => Buffer.from([field * 8, value]);
const stringField = (field: number, value: string) =>
  Buffer.concat([Buffer.from([field * 8 + 2, Buffer.byteLength(value)]), Buffer.from(value)]);

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

  test("a client's request goes on as its own bytes, opaque to the fields that say who calls", () => {
    const deserialize = routerQueueService.enqueueBatch!.requestDeserialize;
    const items = EnqueueBatchRequest.encode(
      EnqueueBatchRequest.fromPartial({ tasks: [{ command: "X" }, { command: "Y" }] }),
    ).finish();
    // unknown fields numbered as ForwardRequest's tenant, roles and map version
    const injected = Buffer.concat([
      items,
      stringField(3, "victim"),
      stringField(5, "admin"),
      varintField(6, 99),
    ]);
    const forwarded = internal.ForwardRequest.decode(
      forwardedBatch(deserialize(injected) as EnqueueBatchRequest),
    );
    expect(forwarded.enqueue).toEqual(injected);
    expect([forwarded.tenant, forwarded.roles, forwarded.mapVersion]).toEqual(["", "", 0]);
    expect(EnqueueBatchRequest.decode(forwarded.enqueue!).tasks.map((t) => t.command)).toEqual([
      "X",
      "Y",
    ]);
  });

  test("bytes a lenient decoder accepted cannot hide the router's fields behind them", () => {
    // [0, 0]: a field numbered 0, which the generated decoder stops at as if the message ended
    const deserialize = routerQueueService.enqueue!.requestDeserialize;
    const call = forwardedTask(deserialize(Buffer.from([0, 0])) as EnqueueRequest);
    const header = internal.ForwardRequest.encode(
      internal.ForwardRequest.fromPartial({ seq: 7, tenant: "t1", roles: "producer" }),
    ).finish();
    const forwarded = internal.ForwardRequest.decode(Buffer.concat([call, header]));
    expect([forwarded.seq, forwarded.tenant, forwarded.roles]).toEqual([7, "t1", "producer"]);
  });

  test("a settlement is forwarded as the client's bytes, in its own field", () => {
    const deserialize = routerQueueService.ack!.requestDeserialize;
    const bytes = AckRequest.encode(
      AckRequest.fromPartial({ items: [{ leaseToken: "tok" }] }),
    ).finish();
    const withExtra = Buffer.concat([bytes, stringField(3, "victim")]);
    const forwarded = internal.ForwardRequest.decode(
      forwardedCall("ack", deserialize(withExtra) as AckRequest),
    );
    expect(AckRequest.decode(forwarded.ack!).items.map((i) => i.leaseToken)).toEqual(["tok"]);
    expect(forwarded.tenant).toBe("");
  });

  test("one task is forwarded as a batch of one, re-encoded: a field 0 in it hides no more tasks", () => {
    const deserialize = routerQueueService.enqueue!.requestDeserialize;
    const task = EnqueueRequest.encode(EnqueueRequest.fromPartial({ command: "X" })).finish();
    // the task, a field numbered 0 (where the decoder stops), then a second task as field 1
    const sneaky = Buffer.concat([task, Buffer.from([0]), Buffer.from([10, task.length]), task]);
    const forwarded = internal.ForwardRequest.decode(
      forwardedTask(deserialize(sneaky) as EnqueueRequest),
    );
    expect(EnqueueBatchRequest.decode(forwarded.enqueue!).tasks).toHaveLength(1);
  });

  test("one task is forwarded as a batch of its own", () => {
    const deserialize = routerQueueService.enqueue!.requestDeserialize;
    const bytes = EnqueueRequest.encode(
      EnqueueRequest.fromPartial({ command: "X", payload: Buffer.from("p") }),
    ).finish();
    const forwarded = internal.ForwardRequest.decode(
      forwardedTask(deserialize(Buffer.from(bytes)) as EnqueueRequest),
    );
    expect(EnqueueBatchRequest.decode(forwarded.enqueue!).tasks).toEqual([
      EnqueueRequest.decode(bytes),
    ]);
  });

  test("a forwarded batch's answer is read without decoding its results", () => {
    const answer = EnqueueBatchResponse.fromPartial({
      results: [{ status: { code: 0 }, taskId: "01J0000000000000000000000A" }],
    });
    const ok = readForwardAnswer(
      internal.ForwardResponse.encode(
        internal.ForwardResponse.fromPartial({ seq: 2 ** 40, enqueued: answer }),
      ).finish(),
    );
    expect(ok.seq).toBe(2 ** 40);
    expect(ok.enqueued!.bytes).toEqual(EnqueueBatchResponse.encode(answer).finish());
    expect(ok.enqueued!.value).toEqual(answer);
    const fenced = readForwardAnswer(
      internal.ForwardResponse.encode(
        internal.ForwardResponse.fromPartial({
          seq: 3,
          error: { code: 14, message: "not mine" },
          mapVersion: 12,
          owner: "b",
        }),
      ).finish(),
    );
    expect(fenced).toEqual({
      seq: 3,
      error: { code: 14, message: "not mine" },
      mapVersion: 12,
      owner: "b",
    });
    const draining = readForwardAnswer(
      internal.ForwardResponse.encode(
        internal.ForwardResponse.fromPartial({ draining: true }),
      ).finish(),
    );
    expect(draining).toEqual({ seq: 0, mapVersion: 0, owner: "", draining: true });
  });

  test("a shard's batch answer goes back on an EnqueueStream as its result entries", () => {
    const answer = EnqueueBatchResponse.fromPartial({
      results: [
        { status: { code: 0 }, taskId: "01J0000000000000000000000A", state: 1 },
        { status: { code: 3, message: "bad" } },
      ],
    });
    const raw = new Raw(EnqueueBatchResponse.encode(answer).finish(), EnqueueBatchResponse);
    const serialize = routerQueueService.enqueueStream!.responseSerialize;
    const sent = streamAnswer(2 ** 40, passThrough(raw));
    expect(sent).toBeInstanceOf(Raw);
    expect(EnqueueStreamResponse.decode(serialize(sent))).toEqual(
      EnqueueStreamResponse.fromPartial({ seq: 2 ** 40, results: answer.results }),
    );
    // an answer holding anything else is decoded and encoded as usual
    const odd = new Raw(
      Buffer.concat([EnqueueBatchResponse.encode(answer).finish(), varintField(2, 1)]),
      EnqueueBatchResponse,
    );
    const rebuilt = streamAnswer(3, passThrough(odd));
    expect(rebuilt).not.toBeInstanceOf(Raw);
    expect(EnqueueStreamResponse.decode(serialize(rebuilt))).toEqual(
      EnqueueStreamResponse.fromPartial({ seq: 3, results: answer.results }),
    );
    // an answer built by the router (a batch split across shards) is encoded as usual
    const built = streamAnswer(7, answer);
    expect(EnqueueStreamResponse.decode(serialize(built))).toEqual(
      EnqueueStreamResponse.fromPartial({ seq: 7, results: answer.results }),
    );
  });
});

describe("a worker's acks on a LeaseStream through the router", () => {
  const read = routerQueueService.leaseStream!.requestDeserialize;
  const toShard = shardQueueService.leaseStream!.requestSerialize;
  const encode = (m: Parameters<typeof LeaseStreamRequest.fromPartial>[0]) =>
    LeaseStreamRequest.encode(LeaseStreamRequest.fromPartial(m)).finish();
  const token = (shard: string, id: string) => `c1~${shard}~X~t~${id}~1~abc`;
  const acks: Partial<AckItem>[] = [
    { leaseToken: token("b", "1") },
    { leaseToken: token("b", "2"), result: Buffer.from("done") },
  ];

  test("a message that only acks one shard's tasks and returns credits is read as bytes", () => {
    const bytes = encode({ requestId: 2 ** 40, credits: 2, acks });
    const message = read(bytes) as StreamAcks;
    expect(message).toBeInstanceOf(StreamAcks);
    expect(message).toMatchObject({ requestId: 2 ** 40, credits: 2, count: 2, shard: "b" });
    expect(message.decode()).toEqual(LeaseStreamRequest.decode(bytes));
    // on to the shard: the acks as they came, under the router's request id, no credits
    const sent = LeaseStreamRequest.decode(toShard(forwardedAcks(77, message.acks)));
    expect(sent).toEqual(LeaseStreamRequest.fromPartial({ requestId: 77, acks }));
    // no request id and no credits
    expect(read(encode({ acks }))).toMatchObject({ requestId: 0, credits: 0, count: 2 });
    // the shard named as the generated decoder reads the token: a byte order mark
    // before it is kept, so this is not shard "b"
    const bom = read(encode({ acks: [{ leaseToken: "c1~\ufeffb~X~t~1~1~abc" }] })) as StreamAcks;
    expect(bom.shard).toBe("\ufeffb");
    expect(bom.shard).toBe(leaseTokenShard(bom.decode().acks[0]!.leaseToken));
  });

  test("every other message is decoded as usual", () => {
    const bytes = encode({ requestId: 3, acks });
    const others: Array<[string, Uint8Array]> = [
      ["a subscribe", encode({ subscribe: { commands: ["X"] }, credits: 1 })],
      ["credits only", encode({ credits: 5 })],
      ["a nack", encode({ acks, nacks: [{ leaseToken: token("b", "3") }] })],
      ["an extend", encode({ acks, extends: [{ leaseToken: token("b", "3") }] })],
      ["acks of two shards", encode({ acks: [...acks, { leaseToken: token("c", "3") }] })],
      ["a token of another form", encode({ acks: [{ leaseToken: "b~1" }] })],
      ["a token with no shard", encode({ acks: [{ leaseToken: "c1~~X" }] })],
      ["a token that ends at its shard", encode({ acks: [{ leaseToken: "c1~b" }] })],
      ["an ack with no token", encode({ acks: [{ result: Buffer.from("r") }] })],
      [
        "a result over the bound",
        encode({
          acks: [{ leaseToken: token("b", "1"), result: Buffer.alloc(MAX_RESULT_BYTES + 1) }],
        }),
      ],
      ["a request id given twice", Buffer.concat([bytes, varintField(3, 4)])],
      ["credits given twice", Buffer.concat([varintField(2, 1), bytes, varintField(2, 1)])],
      [
        "acks not side by side",
        Buffer.concat([encode({ acks }), varintField(3, 1), encode({ acks })]),
      ],
      ["a field numbered 0 after them", Buffer.concat([bytes, Buffer.from([0, 0])])],
      ["an unknown field", Buffer.concat([bytes, varintField(9, 1)])],
      ["bytes that end part way", bytes.subarray(0, bytes.length - 1)],
      // field 3 as a 64-bit value (wire type 1) instead of a varint
      [
        "a request id of another wire type",
        Buffer.concat([Buffer.from([3 * 8 + 1]), Buffer.alloc(8), encode({ acks })]),
      ],
      // a two-byte tag for field 2 (0x90 0x00), which a decoder takes but no encoder writes
      ["a longer tag", Buffer.concat([Buffer.from([0x90, 0x00, 1]), encode({ acks })])],
    ];
    // inside an ack: what the generated decoder reads differently, or not as one item
    const ack = (...fields: Buffer[]) => {
      const item = Buffer.concat(fields);
      return Buffer.concat([Buffer.from([4 * 8 + 2, item.length]), item]);
    };
    const tokenField = stringField(1, token("b", "9"));
    others.push(
      ["a token given twice", ack(tokenField, tokenField)],
      ["a field numbered 0 in an ack", ack(tokenField, Buffer.from([0, 0]))],
      ["an unknown field in an ack", ack(tokenField, varintField(3, 1))],
      ["a token as a varint", ack(varintField(1, 5))],
      ["an empty ack", ack()],
    );
    for (const [what, message] of others) {
      const value = read(message);
      expect([what, value instanceof StreamAcks]).toEqual([what, false]);
    }
    // credits over 32 bits and a request id over 2^53: not taken as they are
    const big = (field: number, bytes: number[]) => Buffer.from([field * 8, ...bytes]);
    expect(
      read(Buffer.concat([big(2, [0x80, 0x80, 0x80, 0x80, 0x10]), encode({ acks })])),
    ).not.toBeInstanceOf(StreamAcks);
    expect(
      read(
        Buffer.concat([big(3, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), encode({ acks })]),
      ),
    ).not.toBeInstanceOf(StreamAcks);
  });

  test("the shard's answer goes back as bytes under the client's request id", () => {
    const result = {
      requestId: 77,
      acks: [{ code: 0 }, { code: 5, message: "no such lease" }],
      nacks: [],
      extends: [],
    };
    const response = LeaseStreamResponse.encode(
      LeaseStreamResponse.fromPartial({ settled: result }),
    ).finish();
    const settled = readSettled(response)!;
    expect(settled.requestId).toBe(77);
    const serialize = routerQueueService.leaseStream!.responseSerialize;
    for (const requestId of [2 ** 40, 0]) {
      const answer = settledAnswer(requestId, settled.settled);
      expect(answer).toBeInstanceOf(Raw);
      expect(LeaseStreamResponse.decode(serialize(answer))).toEqual(
        LeaseStreamResponse.fromPartial({ settled: { ...result, requestId } }),
      );
    }
    expect(SettleResult.decode(settled.settled)).toEqual(SettleResult.fromPartial(result));
    // an answer that does not read to its end is not taken as one
    const cut = settled.settled.subarray(0, settled.settled.length - 1);
    expect(readSettled(Buffer.concat([Buffer.from([3 * 8 + 2, cut.length]), cut]))).toBeUndefined();
    // a malformed answer is not passed on
    expect(
      settledAnswer(1, settled.settled.subarray(0, settled.settled.length - 1)),
    ).toBeUndefined();
    // pushes and the subscribe answer are not settlements
    const pushed = LeaseStreamResponse.encode(
      LeaseStreamResponse.fromPartial({ tasks: { tasks: [task("1")] } }),
    ).finish();
    expect(readSettled(pushed)).toBeUndefined();
  });
});

describe("settledItems: the acks and nacks of a shard's answer that ended their lease", () => {
  test("counts OK, NOT_FOUND and FAILED_PRECONDITION, not what may not have been applied", () => {
    const bytes = (result: Parameters<typeof SettleResult.fromPartial>[0]) =>
      SettleResult.encode(SettleResult.fromPartial(result)).finish();
    expect(settledItems(bytes({ requestId: 3, acks: [{}, {}, {}] }))).toBe(3);
    expect(
      settledItems(
        bytes({
          acks: [{ code: Status.OK }, { code: Status.UNAVAILABLE, message: "shard a away" }],
          nacks: [{ code: Status.NOT_FOUND }, { code: Status.DEADLINE_EXCEEDED }],
          extends: [{ status: { code: Status.OK }, leaseDeadlineMs: 5 }],
        }),
      ),
    ).toBe(2);
    expect(settledItems(bytes({ acks: [{ code: Status.FAILED_PRECONDITION }] }))).toBe(1);
    expect(settledItems(bytes({ acks: [{ code: Status.INTERNAL }] }))).toBe(0);
  });
});

describe("an EnqueueBatch request through the router", () => {
  const read = routerQueueService.enqueueBatch!.requestDeserialize;
  const batch = EnqueueBatchRequest.fromPartial({
    tasks: [
      { command: "X", payload: Buffer.from("1"), priority: 3, headers: { a: "b" } },
      { command: "Y", idempotencyKey: "k", delayMs: 5_000, backoff: { kind: 1, baseMs: 10 } },
      { command: "X\ufeff", payload: Buffer.from("3") },
    ],
  });
  const bytes = EnqueueBatchRequest.encode(batch).finish();

  test("is read for its commands only, and goes on as the client's bytes", () => {
    const req = read(bytes) as BatchBytes;
    expect(req).toBeInstanceOf(BatchBytes);
    expect(req.commands).toEqual(["X", "Y", "X\ufeff"]);
    expect(batchCommands(req)).toBe(req.commands);
    // forwarded as the very bytes, undecoded
    const forwarded = internal.ForwardRequest.decode(forwardedBatch(req));
    expect(Buffer.from(forwarded.enqueue!).equals(Buffer.from(bytes))).toBe(true);
    // decoded when read, as the generated decoder reads it
    expect(req.tasks).toEqual(batch.tasks);
    expect(batchCommands(batch)).toEqual(["X", "Y", "X\ufeff"]);
  });

  test("a request the decoder might read otherwise is decoded as usual", () => {
    const task = (...fields: Buffer[]) => {
      const t = Buffer.concat(fields);
      return Buffer.concat([Buffer.from([1 * 8 + 2, t.length]), t]);
    };
    const others: Array<[string, Uint8Array]> = [
      ["another field", Buffer.concat([bytes, varintField(2, 1)])],
      ["a task with no command", task(varintField(3, 1))],
      ["a command given twice", task(stringField(1, "X"), stringField(1, "Y"))],
      ["a command as a varint", task(varintField(1, 1))],
      ["a field numbered 0 in a task", task(stringField(1, "X"), Buffer.from([0, 0]))],
      ["bytes that end part way", bytes.subarray(0, bytes.length - 1)],
      ["a group", Buffer.concat([bytes, Buffer.from([1 * 8 + 3])])],
    ];
    for (const [what, message] of others)
      expect([what, read(message) instanceof BatchBytes]).toEqual([what, false]);
    expect(readBatch(bytes)).toBeInstanceOf(BatchBytes);
  });

  test("reads the commands the generated decoder reads, or leaves the bytes to it (fuzzed)", () => {
    // batches built field by field, with what makes a reader part ways with the decoder
    // where it matters: a field numbered 0 or a group's end inside a task or a message
    // in it (the decoder leaves that message there and reads on as the task), a tag past
    // 32 bits (read as its low bits), a skipped value running past its message's end
    const len = (field: number, body: Buffer) => P.pb.bytes(field, body);
    const raw = (...b: number[]) => Buffer.from(b);
    const looksLikeY = raw(0x0a, 0x01, 0x59); // field 1: "Y"
    const hazardsInside = fc.constantFrom(
      raw(0x00),
      raw(0x0c),
      raw(0x09, 1, 2, 3), // a fixed64 cut short
      raw(0x0a, 0x05, 0x41), // a length past the end
    );
    const inner = fc.array(
      fc.oneof(
        { arbitrary: fc.constantFrom(raw(0x10, 0x05), looksLikeY), weight: 4 },
        { arbitrary: hazardsInside, weight: 1 },
      ),
      { maxLength: 3 },
    );
    const piece = fc.oneof(
      {
        arbitrary: fc.constantFrom(
          stringField(1, "X"),
          raw(0x18, 0x03), // priority
          len(2, Buffer.from("payload")),
        ),
        weight: 6,
      },
      {
        arbitrary: fc.constantFrom(
          looksLikeY,
          raw(0x00),
          raw(0x0c),
          raw(0x8a, 0x80, 0x80, 0x80, 0x10, 0x01, 0x59), // field 2^29+1 to a 64-bit reader, 1 to the decoder
          raw(0x80, 0x80, 0x80, 0x80, 0x10), // tag 0 to the decoder
        ),
        weight: 1,
      },
      { arbitrary: inner.map((parts) => len(7, Buffer.concat(parts))), weight: 2 }, // backoff
      { arbitrary: inner.map((parts) => len(9, Buffer.concat(parts))), weight: 2 }, // a headers entry
    );
    const task = fc
      .array(piece, { minLength: 1, maxLength: 5 })
      .map((parts) => len(1, Buffer.concat(parts)));
    let accepted = 0;
    fc.assert(
      fc.property(fc.array(task, { minLength: 1, maxLength: 3 }), (tasks) => {
        const bytes = Buffer.concat(tasks);
        const read = readBatch(bytes);
        if (!read) return;
        accepted++;
        let decoded: string[];
        try {
          decoded = EnqueueBatchRequest.decode(bytes).tasks.map((t) => t.command);
        } catch {
          return; // the shard refuses such bytes whole: INVALID_ARGUMENT, nothing stored
        }
        expect(read.commands).toEqual(decoded);
      }),
      { numRuns: 3000 },
    );
    expect(accepted).toBeGreaterThan(100);
  });

  test("a task the decoder refuses is the caller's bad input when the tasks are read", () => {
    // delay_ms (field 4) past 2^53, as the generated decoder refuses it
    const huge = Buffer.from([4 * 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    const t = Buffer.concat([stringField(1, "X"), huge]);
    const req = read(Buffer.concat([Buffer.from([1 * 8 + 2, t.length]), t])) as BatchBytes;
    expect(req.commands).toEqual(["X"]);
    expect(() => req.tasks).toThrow(
      expect.objectContaining({ code: Status.INVALID_ARGUMENT }) as unknown as Error,
    );
  });
});
