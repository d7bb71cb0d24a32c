import { DEFAULT_TASK_LIMITS, checkTask } from "@codeq/engine";
import { BackoffKind, EnqueueBatchRequest, internal, TaskState } from "@codeq/proto";
import { MAX_NACK_ERROR_BYTES, payloadCapProblem, TASK_FIELDS_MAX_BYTES } from "./checks";

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

describe("payloadCapProblem", () => {
  const MIB = 1024 * 1024;

  it("passes a cap that leaves room for the task's other fields", () => {
    expect(payloadCapProblem(MIB, 16 * MIB, "an enqueue")).toBeUndefined();
    expect(payloadCapProblem(16 * MIB - TASK_FIELDS_MAX_BYTES, 16 * MIB, "x")).toBeUndefined();
  });

  it("names the settings, what the cap needs and the most that fits", () => {
    const cap = 16 * MIB - TASK_FIELDS_MAX_BYTES + 1;
    expect(payloadCapProblem(cap, 16 * MIB, "an enqueue")).toBe(
      `payloadCapBytes (${cap}) does not fit maxMessageBytes (${16 * MIB}): an enqueue needs requests of up to ${16 * MIB + 1} bytes; raise maxMessageBytes to at least ${16 * MIB + 1}, or lower payloadCapBytes to at most ${cap - 1}`,
    );
    const twice = payloadCapProblem(32 * MIB, 16 * MIB, "x");
    expect(twice).toContain(`at least ${32 * MIB + TASK_FIELDS_MAX_BYTES}`);
    expect(twice).toContain(`at most ${16 * MIB - TASK_FIELDS_MAX_BYTES}`);
  });

  it("suggests no lower cap when none fits", () => {
    const problem = payloadCapProblem(1, 1024, "an enqueue");
    expect(problem).toMatch(/raise maxMessageBytes to at least \d+$/);
  });
});
