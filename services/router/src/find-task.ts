import { ServerError, Status } from "nice-grpc";
import type { GetTaskRequest, GetTaskResponse } from "@codeq/proto";
import { fanOut, throwCallerError } from "./fan-out";
import { passThrough } from "./wire-bytes";
import type { FormerShards } from "./former-shards";
import type { Forward, Routing } from "./routing";

/**
 * GetTask over the queue's `shards`, then, when none of them holds the task, over the
 * shards the queue moved from (every other shard when that history is unknown).
 * NOT_FOUND when no shard holds it; UNAVAILABLE when one that may did not answer.
 */
export async function findTask(
  routing: Routing,
  f: Forward,
  req: GetTaskRequest,
  shards: string[],
  formerShards: FormerShards | undefined,
): Promise<GetTaskResponse> {
  const ask = (shards: string[]) =>
    fanOut(routing, shards, (c, deadline) =>
      c.queue.getTask(req, { ...routing.options(f), deadline }),
    );
  const { answers, failed } = await ask(shards);
  /** NOT_FOUND is an answer; a shard that failed otherwise may hold the task. */
  const unanswered = (round: typeof failed) => {
    const real = round.filter((x) => x.error.code !== Status.NOT_FOUND);
    throwCallerError(real);
    if (real.length > 0)
      throw new ServerError(
        Status.UNAVAILABLE,
        `task ${req.taskId} not found on the shards that answered; ${real.map((x) => x.shard).join(", ")} did not answer: ${real[0]!.error.details}`,
      );
  };
  const found = answers.find((a) => a.value.value.task);
  if (found) return passThrough(found.value);
  unanswered(failed);
  // a queue that moved left its completed tasks on the shard it moved from until
  // retention removes them (and a dedup answer names them): asked last, as the
  // queue's own shards do not hold the task; only the shards its finished moves
  // involved, when the history is known
  const former = await formerShards?.of(req.command, f.identity.tenant, false);
  const others = routing.pool
    .all()
    .map((c) => c.id)
    .filter((id) => !shards.includes(id) && (former === undefined || former.includes(id)));
  const left = others.length > 0 ? await ask(others) : undefined;
  const behind = left?.answers.find((a) => a.value.value.task);
  if (behind) return passThrough(behind.value);
  // (a shard the queue was on: one that is not, asked only because the history is
  // unknown, does not make every miss unavailable while it is down)
  if (left && former !== undefined) unanswered(left.failed);
  throw new ServerError(
    Status.NOT_FOUND,
    failed[0]?.error.details ?? `no task ${req.taskId} in ${req.command} for this tenant`,
  );
}
