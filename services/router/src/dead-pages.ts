import { Metadata, ServerError, Status } from "nice-grpc";
import { Task } from "@codeq/proto";
import type { ListDeadRequest, ListDeadResponse } from "@codeq/proto";
import { CALLER_CODES } from "@codeq/server-kit";
import { MAX_RESPONSE_BYTES_HEADER } from "@codeq/wire";
import { asServerError } from "./fan-out";
import { elementBytes } from "./passthrough";
import type { Forward, Routing } from "./routing";

/**
 * One ListDead page of at most `size` tasks (`req` checked by the caller), through the
 * queue's `shards` one after another from where `req.pageToken` left off.
 */
export async function listDeadPage(
  routing: Routing,
  f: Forward,
  req: ListDeadRequest,
  shards: readonly string[],
  size: number,
): Promise<ListDeadResponse> {
  const token = decodeDeadToken(req.pageToken, shards);
  const order = deadPageOrder(shards, token);
  const done = [...token.done];
  // the token's cursor is its shard's; the others start at their beginning
  let cursor = order[0] === token.shard ? token.cursor : "";
  const tasks: Task[] = [];
  const unavailableShards: string[] = [];
  // each shard bounds its page's bytes; past the first task, a shard may add only
  // what still fits in one answer (MAX_RESPONSE_BYTES_HEADER)
  let bytes = 0;
  let at = 0;
  while (at < order.length && tasks.length < size) {
    const id = order[at]!;
    const asked = size - tasks.length;
    const options = routing.options(f);
    if (tasks.length > 0) {
      const left = Math.max(0, routing.config.maxResponseBytes - bytes);
      options.metadata = Metadata(options.metadata).set(MAX_RESPONSE_BYTES_HEADER, `${left}`);
    }
    try {
      const page = await routing.pool
        .get(id)
        .call((c) => c.queue.listDead({ ...req, pageSize: asked, pageToken: cursor }, options));
      tasks.push(...page.value.tasks);
      for (const task of page.value.tasks) bytes += elementBytes(Task, task);
      if (page.value.nextPageToken) {
        cursor = page.value.nextPageToken;
        // fewer than asked, and more to come: the page is full by bytes
        if (page.value.tasks.length < asked) break;
        continue;
      }
    } catch (err) {
      const e = asServerError(err);
      if (CALLER_CODES.has(e.code)) throw e;
      unavailableShards.push(id);
    }
    done.push(id);
    at++;
    cursor = "";
  }
  const nextPageToken =
    at < order.length ? encodeDeadToken({ shard: order[at]!, cursor, done }) : "";
  return { tasks, nextPageToken, unavailableShards };
}

/**
 * Where a ListDead listing stands: the shard it is in and that shard's cursor, and the
 * shards it has listed in full. Shards are named, not numbered: the queue's shards may
 * change between pages (a move starts, ends or is aborted), and a position in the list
 * would then skip a shard, or send one shard's cursor to another.
 */
interface DeadPageToken {
  /** The shard the listing is in ("" at the start). */
  readonly shard: string;
  readonly cursor: string;
  readonly done: readonly string[];
}

const DEAD_TOKEN_MAX_CHARS = 4096;

function decodeDeadToken(token: string, shards: readonly string[]): DeadPageToken {
  if (!token) return { shard: "", cursor: "", done: [] };
  const bad = () =>
    new ServerError(
      Status.INVALID_ARGUMENT,
      "page_token is not one this router issued; start again without it",
    );
  if (token.length > DEAD_TOKEN_MAX_CHARS) throw bad();
  const text = Buffer.from(token, "base64url").toString("utf8");
  // a token of a router before shards were named: its shard by position
  const old = /^r1\.(\d{1,3})\.(.*)$/s.exec(text);
  if (old) {
    const at = Number(old[1]);
    return { shard: shards[at] ?? "", cursor: old[2]!, done: shards.slice(0, at) };
  }
  const named = /^r2\.(.*)$/s.exec(text);
  let t: unknown;
  try {
    t = named ? JSON.parse(named[1]!) : undefined;
  } catch {
    throw bad();
  }
  const o = t as Partial<Record<keyof DeadPageToken, unknown>> | undefined;
  if (
    typeof o?.shard !== "string" ||
    typeof o.cursor !== "string" ||
    !Array.isArray(o.done) ||
    !o.done.every((d) => typeof d === "string")
  )
    throw bad();
  return { shard: o.shard, cursor: o.cursor, done: o.done as string[] };
}

const encodeDeadToken = (t: DeadPageToken) =>
  Buffer.from(`r2.${JSON.stringify(t)}`, "utf8").toString("base64url");

/**
 * The shards a ListDead page goes through, in order: the one the token is in (if the
 * queue still has it), then the queue's shards it has not listed yet.
 */
function deadPageOrder(shards: readonly string[], t: DeadPageToken): string[] {
  const done = new Set(t.done);
  const rest = shards.filter((id) => id !== t.shard && !done.has(id));
  return shards.includes(t.shard) ? [t.shard, ...rest] : rest;
}
