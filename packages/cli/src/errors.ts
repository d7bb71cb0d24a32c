import { ClientError, Status } from "nice-grpc";
import type { GlobalOptions } from "./args";

/** Exit codes of `codeq`, documented in `codeq --help`. */
export const ExitCode = {
  OK: 0,
  /** Unknown command or option, missing argument, unreadable local file. */
  USAGE: 1,
  /** The server refused the call (any gRPC status but the two below). */
  REFUSED: 2,
  /** The router is unreachable or did not answer in time (UNAVAILABLE, DEADLINE_EXCEEDED). */
  UNAVAILABLE: 3,
  /** `assign --wait`: the migration ended ABORTED (or ABANDONED: a shard of it lost). */
  MIGRATION_ABORTED: 4,
  /**
   * `verify`: a shard holds tasks where routers do not read them, or did not answer;
   * `shards --check`: a shard is unhealthy or its breaker is not CLOSED; `stats`, `dlq
   * list`: a shard did not answer (what is printed leaves it out); `shard default`: the
   * change is not finished (the former default still read; run it again).
   */
  INCONSISTENT: 5,
  /**
   * Interrupted (Ctrl-C): assign --wait and tail stop following (a migration goes on on
   * the server); dlq redrive and purge stop after the call under way.
   */
  INTERRUPTED: 130,
} as const;

/** A mistake on the command line; `hint` says where to look. */
export class UsageError extends Error {
  override readonly name = "UsageError";
  constructor(
    message: string,
    readonly hint?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The status name of a gRPC code, e.g. 9 → FAILED_PRECONDITION. */
export function statusName(code: number): string {
  return Status[code] ?? `STATUS_${code}`;
}

/** Whether a status means "could not reach or hear back from the server" rather than a refusal. */
export function isUnreachable(code: number): boolean {
  return code === Status.UNAVAILABLE || code === Status.DEADLINE_EXCEEDED;
}

/** The exit code for a gRPC status code. */
export function exitCodeOfStatus(code: number): number {
  if (code === Status.OK) return ExitCode.OK;
  return isUnreachable(code) ? ExitCode.UNAVAILABLE : ExitCode.REFUSED;
}

/** Exit code and stderr lines for whatever a command threw. */
export function describeError(
  err: unknown,
  via?: Pick<GlobalOptions, "router" | "timeoutMs" | "token" | "tls">,
): { code: number; lines: string[] } {
  if (err instanceof UsageError)
    return { code: ExitCode.USAGE, lines: [`codeq: ${err.message}`, ...hintLines(err.hint)] };
  // a call given up on Ctrl-C: the router was told; what it had done by then stands
  if ((err as Error | undefined)?.name === "AbortError")
    return {
      code: ExitCode.INTERRUPTED,
      lines: ["codeq: interrupted before the router answered (what it had done by then stands)"],
    };
  if (err instanceof ClientError) {
    const lines = [`${statusName(err.code)}: ${err.details.trim()}`];
    const behind = err.code === Status.UNAVAILABLE ? behindRouter(err.details) : undefined;
    if (via && behind === "control store")
      lines.push(
        `(router ${via.router} answered: its control store is unavailable; map changes and migration records wait for it)`,
      );
    else if (via && behind === "shard")
      lines.push(
        `(router ${via.router} answered: a shard behind it is unavailable; \`codeq shards\` shows which)`,
      );
    else if (via && err.code === Status.UNAVAILABLE)
      lines.push(
        `(via router ${via.router}; --router or CODEQ_ROUTER names another${via.tls ? "" : "; --tls or --tls-ca if it serves TLS"})`,
      );
    if (via && err.code === Status.UNAUTHENTICATED)
      lines.push(
        via.token === undefined
          ? "(the router wants a credential: the token in CODEQ_TOKEN, or --token-file FILE)"
          : "(the router did not accept the token given)",
      );
    if (via && err.code === Status.DEADLINE_EXCEEDED)
      lines.push(`(via router ${via.router}; no answer within --timeout ${via.timeoutMs} ms)`);
    return { code: exitCodeOfStatus(err.code), lines };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: ExitCode.USAGE, lines: [`codeq: ${message}`] };
}

/** grpc-js's own words for a call that never reached a server (or lost it). */
const TRANSPORT =
  /^(No connection established|Name resolution failed|Connection dropped|Failed to connect|connect E[A-Z]+|read E[A-Z]+|write E[A-Z]+|Received RST_STREAM|Stream refused)/;

/**
 * What a router's own UNAVAILABLE is about: a shard or the control store behind it
 * (its messages name them), or undefined for the router itself or the transport.
 */
function behindRouter(details: string): "shard" | "control store" | undefined {
  const text = details.trim();
  if (TRANSPORT.test(text)) return undefined;
  if (/\bcontrol store\b/.test(text)) return "control store";
  if (/\bshards?\b/.test(text)) return "shard";
  return undefined;
}

const hintLines = (hint: string | undefined) => (hint ? [hint] : []);
