import { DEFAULT_TASK_LIMITS, checkTask } from "@codeq/engine";
import { BackoffKind, EnqueueBatchRequest, internal, TaskState } from "@codeq/proto";
import {
  MAX_NACK_ERROR_BYTES,
  MAX_RESULT_BYTES,
  requestLimitProblem,
  TASK_FIELDS_MAX_BYTES,
} from "./checks";

/** The largest header set the engine takes: 64 names of 128 bytes, values of 4096. */
const headers = Object.fromEntries(
  Array.from({ length: 64 }, (_, i) => [`h${i}`.padEnd(128, "n"), "v".repeat(4096)]),
);
const longest = { baseMs: 86_400_000, maxMs: 86_400_000, jitter: true };
/** Every field of an enqueued task at its largest, but the payload (as the engine takes it). */
const largest = {
  command: "C".repeat(128),
  payload: new Uint8Array(0),
  priority: 9,
  delayMs: 365 * 24 * 3600 * 1000,
  maxAttempts: 1000,
  backoff: { ...longest, kind: "exponential" as const },
  idempotencyKey: "k".repeat(256),
  headers,
};
/** The same on the wire. */
const wire = { ...largest, backoff: { ...longest, kind: BackoffKind.BACKOFF_KIND_EXPONENTIAL } };

describe("TASK_FIELDS_MAX_BYTES", () => {
  it("holds the largest task the engine takes, as enqueued and as moved", () => {
    const now = Date.now();
    expect(() => checkTask(largest.command, largest, DEFAULT_TASK_LIMITS, now)).not.toThrow();
    const enqueued = EnqueueBatchRequest.encode(
      EnqueueBatchRequest.fromPartial({ tasks: [wire] }),
    ).finish();
    expect(enqueued.length).toBeLessThanOrEqual(TASK_FIELDS_MAX_BYTES);

    const moved = internal.ImportTasksRequest.encode(
      internal.ImportTasksRequest.fromPartial({
        command: largest.command,
        tenant: "T".repeat(128),
        tasks: [
          {
            task: {
              ...wire,
              id: "0".repeat(26),
              tenant: "T".repeat(128),
              runAtMs: now,
              attempts: 999,
              createdAtMs: now,
              updatedAtMs: now,
              state: TaskState.TASK_STATE_DEAD,
              lastError: "e".repeat(MAX_NACK_ERROR_BYTES),
            },
            idempotencyExpiresAtMs: now,
            leaseSeq: 2 ** 40,
            doneAtMs: now,
          },
        ],
      }),
    ).finish();
    expect(moved.length).toBeLessThanOrEqual(TASK_FIELDS_MAX_BYTES);
  });

  it("is sized for the engine's limits: one header, or one byte, more is refused", () => {
    const now = Date.now();
    const spec = (h: Record<string, string>) => ({ ...largest, headers: h });
    const check = (h: Record<string, string>) =>
      checkTask(largest.command, spec(h), DEFAULT_TASK_LIMITS, now);
    expect(() => check({ ...headers, extra: "v" })).toThrow(/at most 64 headers/);
    const [name] = Object.keys(headers) as [string];
    expect(() => check({ ...headers, [name]: "v".repeat(4097) })).toThrow(/4096 bytes/);
    const { [name]: _, ...rest } = headers;
    expect(() => check({ ...rest, [`${name}x`]: "v" })).toThrow(/1\.\.128 bytes/);
    const key = { ...largest, idempotencyKey: "k".repeat(257) };
    expect(() => checkTask(largest.command, key, DEFAULT_TASK_LIMITS, now)).toThrow(
      /idempotencyKey/,
    );
  });
});

describe("requestLimitProblem", () => {
  const MIB = 1024 * 1024;
  const least = MAX_RESULT_BYTES + TASK_FIELDS_MAX_BYTES;

  it("passes a limit that holds the largest item with the rest of its request", () => {
    expect(requestLimitProblem(MIB, 16 * MIB)).toBeUndefined();
    expect(requestLimitProblem(16 * MIB - TASK_FIELDS_MAX_BYTES, 16 * MIB)).toBeUndefined();
    expect(requestLimitProblem(1024, least)).toBeUndefined();
  });

  it("names what does not fit, the least limit, and the most cap when the cap is the cause", () => {
    const cap = 16 * MIB - TASK_FIELDS_MAX_BYTES + 1;
    expect(requestLimitProblem(cap, 16 * MIB)).toBe(
      `maxMessageBytes (${16 * MIB}) is too small for a task with a payload of payloadCapBytes (${cap}) and the rest of its request (up to ${TASK_FIELDS_MAX_BYTES} bytes): raise it to at least ${16 * MIB + 1}, or lower payloadCapBytes to at most ${cap - 1}`,
    );
  });

  it("holds an ack's largest result whatever the cap, and then suggests no cap", () => {
    expect(requestLimitProblem(1024, least - 1)).toBe(
      `maxMessageBytes (${least - 1}) is too small for an ack with a result of ${MAX_RESULT_BYTES} bytes (the most a result may be) and the rest of its request (up to ${TASK_FIELDS_MAX_BYTES} bytes): raise it to at least ${least}`,
    );
  });

  it("leaves room, at its least, for the mover's other requests", () => {
    const name = "N".repeat(128);
    const keys = internal.ImportTasksRequest.encode(
      internal.ImportTasksRequest.fromPartial({
        command: name,
        tenant: name,
        migrationId: "m".repeat(64),
        idempotencyKeys: Array.from({ length: 1000 }, (_, i) => ({
          key: `${i}`.padEnd(256, "k"),
          taskId: "0".repeat(26),
          expiresAtMs: Date.now(),
        })),
      }),
    ).finish();
    expect(keys.length).toBeLessThanOrEqual(least);
    // what a batch's stored bytes do not count (ids, names, numbers, framing) for 1000
    // tasks fits in the half of the room moveBatchBytes leaves for it
    const now = Date.now();
    const bare = internal.ImportTasksRequest.encode(
      internal.ImportTasksRequest.fromPartial({
        command: name,
        tenant: name,
        migrationId: "m".repeat(64),
        tasks: Array.from({ length: 1000 }, () => ({
          task: {
            id: "0".repeat(26),
            command: name,
            tenant: name,
            priority: 9,
            runAtMs: now,
            maxAttempts: 1000,
            attempts: 1000,
            createdAtMs: now,
            updatedAtMs: now,
            state: TaskState.TASK_STATE_DEAD,
          },
          idempotencyExpiresAtMs: now,
          leaseSeq: 2 ** 40,
          doneAtMs: now,
        })),
      }),
    ).finish();
    expect(bare.length).toBeLessThanOrEqual((least - TASK_FIELDS_MAX_BYTES) / 2);
  });
});
