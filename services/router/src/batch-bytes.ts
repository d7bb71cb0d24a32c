import { EnqueueBatchRequest, type EnqueueRequest } from "@codeq/proto";
import { BadRequest, safeDecode } from "@codeq/server-kit";
import { keepReceived, scan, utf8 } from "./wire-bytes";

/**
 * An EnqueueBatch request read for routing only: each task's command, from the bytes.
 * Its tasks are decoded when something reads them (a batch split across shards, or
 * one checked whole here); a batch that goes to one shard goes on as the bytes the
 * client sent and is never decoded by the router. Read strictly (`readBatch`): a
 * request the generated decoder could read differently is decoded as usual, so the
 * router routes by the commands the shard will read.
 */
export class BatchBytes implements EnqueueBatchRequest {
  private decoded: EnqueueRequest[] | undefined;

  constructor(
    readonly bytes: Uint8Array,
    /** The tasks' commands, in order. */
    readonly commands: readonly string[],
  ) {
    keepReceived(this, bytes);
  }

  /**
   * The tasks, decoded on first use. Bytes the generated decoder refuses (a number
   * beyond 2^53, a malformed part of a task) are the caller's bad input, as for any
   * request (INVALID_ARGUMENT); a batch that goes on as bytes gets the same from the
   * shard, which decodes each forwarded call apart.
   */
  get tasks(): EnqueueRequest[] {
    if (this.decoded) return this.decoded;
    const value = safeDecode(EnqueueBatchRequest, this.bytes);
    if (value instanceof BadRequest) throw value.error();
    return (this.decoded = (value as EnqueueBatchRequest).tasks);
  }

  /** This request, once its bytes are known to decode (INVALID_ARGUMENT otherwise). */
  checked(): this {
    void this.tasks;
    return this;
  }
}

/** A batch's commands, in order, without decoding a BatchBytes. */
export function batchCommands(req: EnqueueBatchRequest): readonly string[] {
  return req instanceof BatchBytes ? req.commands : req.tasks.map((t) => t.command);
}

const TASK_TAG = (1 << 3) | 2;
const COMMAND_TAG = (1 << 3) | 2;

/**
 * `bytes` as BatchBytes, or undefined (decode it) when the request has a field other
 * than its tasks, a task has no command, its command twice or in another encoding, a
 * field numbered 0 (where the generated decoder stops reading it), a group, or bytes
 * that end part way.
 */
export function readBatch(bytes: Uint8Array): BatchBytes | undefined {
  const commands: string[] = [];
  let plain = true;
  const complete = scan(bytes, (_field, start, end, _value, tagStart) => {
    if (!plain) return;
    const command =
      bytes[tagStart] === TASK_TAG && end !== undefined
        ? taskCommand(bytes.subarray(start, end))
        : undefined;
    if (command === undefined) plain = false;
    else commands.push(command);
  });
  return complete && plain ? new BatchBytes(bytes, commands) : undefined;
}

/** EnqueueRequest's fields that are messages: backoff (7) and each headers entry (9). */
const TASK_MESSAGE_FIELDS = new Set([7, 9]);

/**
 * An EnqueueRequest's command, read as the generated decoder reads it; undefined when
 * unsure. The messages in a task are walked too: the decoder leaves one early at a
 * field numbered 0 or a group's end and reads on from there as the task's own fields,
 * which could hold another command, or more tasks.
 */
function taskCommand(task: Uint8Array): string | undefined {
  let command: Uint8Array | undefined;
  let plain = true;
  const complete = scan(task, (field, start, end, _value, tagStart) => {
    if (field === 0) plain = false;
    else if (field === 1) {
      if (task[tagStart] === COMMAND_TAG && end !== undefined && command === undefined)
        command = task.subarray(start, end);
      else plain = false;
    } else if (TASK_MESSAGE_FIELDS.has(field) && end !== undefined) {
      if (!flat(task.subarray(start, end))) plain = false;
    }
  });
  return complete && plain && command !== undefined ? utf8.decode(command) : undefined;
}

/** A message the generated decoder reads to its end: no field numbered 0, no group, no bytes left over. */
function flat(message: Uint8Array): boolean {
  let plain = true;
  const complete = scan(message, (field) => {
    if (field === 0) plain = false;
  });
  return complete && plain;
}
