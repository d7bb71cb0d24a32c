/**
 * Static bearer tokens from a YAML or JSON file, for small setups and tests:
 *
 *   tokens:
 *     - token: "a-long-random-string"        # or token_sha256: <hex SHA-256 of the token>
 *       tenant: acme
 *       principal: ci-bot                    # optional; default derived from the token's hash
 *       roles: [producer, worker]
 *       commands: [resize-image]             # optional; limits a cross-tenant worker
 *
 * The file is validated strictly at load (unknown fields too) and a bad one throws an
 * AuthConfigError naming the file and every problem. Tokens are held only as SHA-256
 * digests and compared with crypto.timingSafeEqual.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import { parseDocument } from "yaml";
import { z } from "zod";
import type { Authenticator, TokenVerifier } from "./authenticator";
import { bearerToken } from "./bearer";
import { AuthConfigError, AuthError, formatProblems, messageOf } from "./errors";
import { COMMAND_PATTERN, TENANT_PATTERN, type Identity, type Role } from "./identity";
import { WatchedFile, type WatchedFileOptions } from "./watched-file";

/** Shortest plaintext token accepted: shorter ones are guessable. */
export const MIN_STATIC_TOKEN_LENGTH = 16;

const roleSchema = z.enum(["producer", "worker", "admin", "cross-tenant-worker"]);

const entrySchema = z
  .strictObject({
    /** The token as sent after `Bearer `. */
    token: z
      .string()
      .min(MIN_STATIC_TOKEN_LENGTH, `must be at least ${MIN_STATIC_TOKEN_LENGTH} characters`)
      .regex(/^\S+$/, "must not contain whitespace")
      .optional(),
    /** Hex SHA-256 of the token, to keep plaintext tokens out of the file. */
    token_sha256: z
      .string()
      .regex(/^[0-9a-fA-F]{64}$/, "must be 64 hex digits (the SHA-256 of the token)")
      .optional(),
    tenant: z.string().regex(TENANT_PATTERN, `must match ${TENANT_PATTERN.source}`),
    principal: z.string().min(1).max(256).optional(),
    roles: z.array(roleSchema).min(1, "must list at least one role"),
    commands: z
      .array(z.string().regex(COMMAND_PATTERN, `must match ${COMMAND_PATTERN.source}`))
      .optional(),
  })
  .refine((entry) => (entry.token === undefined) !== (entry.token_sha256 === undefined), {
    message: "needs exactly one of token and token_sha256",
    // Also when other fields are bad, so one load reports every problem.
    when: (payload) => typeof payload.value === "object" && payload.value !== null,
  });

const fileSchema = z.strictObject({
  tokens: z.array(entrySchema).min(1, "must list at least one token"),
});

/** One accepted token: its digest and the identity it stands for. */
interface Entry {
  readonly digest: Buffer;
  readonly identity: Identity;
}

/** Authenticates callers by exact match against a fixed set of tokens. */
export class StaticTokens implements Authenticator, TokenVerifier {
  private readonly entries: readonly Entry[];

  /** `entries` as parsed by the loader; `file` names the source in messages. */
  constructor(
    entries: readonly { digest: Buffer; identity: Identity }[],
    readonly file?: string,
  ) {
    this.entries = entries;
  }

  /** How many tokens are accepted. */
  get size(): number {
    return this.entries.length;
  }

  /** The identity of `token`, or undefined when it is not one of the static tokens. */
  lookup(token: string): Identity | undefined {
    const digest = sha256(token);
    let found: Identity | undefined;
    // Compare against every entry, without stopping early, so timing does not tell which matched.
    for (const entry of this.entries) {
      if (crypto.timingSafeEqual(digest, entry.digest) && !found) found = entry.identity;
    }
    return found;
  }

  async verify(token: string): Promise<Identity> {
    const identity = this.lookup(token);
    if (!identity) {
      throw new AuthError(
        "UNAUTHENTICATED",
        "the Bearer token is not one of this service's static tokens; check the token you were issued",
      );
    }
    return identity;
  }

  async authenticate(authorization: string | undefined): Promise<Identity> {
    return this.verify(bearerToken(authorization));
  }
}

/**
 * A static tokens file, read again when it changes (`WatchedFile`): a token taken out
 * of the file is refused, and one added accepted, from the next check of the file on
 * (at most `checkIntervalMs`, default 10 s, later), without a restart. A file that
 * becomes unreadable or invalid keeps the last good tokens (reported once).
 */
export class StaticTokensFile {
  private readonly source: WatchedFile<StaticTokens>;

  /** Reads `file` now; throws AuthConfigError naming it and every problem. */
  constructor(
    readonly file: string,
    options: WatchedFileOptions = {},
  ) {
    this.source = new WatchedFile(
      file,
      "static tokens file",
      (text) => parseStaticTokens(text, file),
      options,
      "StaticTokensReloadError",
    );
  }

  /** How many tokens are accepted. */
  get size(): number {
    return this.source.current.size;
  }

  /** Times a changed file was loaded. */
  get reloads(): number {
    return this.source.reloads;
  }

  /** Times a changed file could not be used. */
  get reloadErrors(): number {
    return this.source.reloadErrors;
  }

  /** The identity of `token` (the file looked at first once the interval is over), or undefined. */
  async lookup(token: string): Promise<Identity | undefined> {
    const due = this.source.refreshIfDue();
    if (due) await due;
    return this.source.current.lookup(token);
  }

  /** Re-reads the file if its stat changed; true when new tokens were loaded. */
  refresh(): Promise<boolean> {
    return this.source.refresh();
  }
}

/** Reads and validates a static tokens file. Throws AuthConfigError naming `file` and every problem. */
export function loadStaticTokens(file: string): StaticTokens {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new AuthConfigError(`cannot read static tokens file ${file}: ${messageOf(err)}`, {
      cause: err,
    });
  }
  return parseStaticTokens(text, file);
}

/** Parses and validates the text of a static tokens file (YAML or JSON; `file` names it in messages). */
export function parseStaticTokens(text: string, file = "(static tokens)"): StaticTokens {
  const fail = (problems: string[], cause?: unknown): never => {
    throw new AuthConfigError(formatProblems(`invalid static tokens file ${file}:`, problems), {
      problems,
      cause,
    });
  };
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    // Only the first line: YAML's messages quote the offending source line, which may hold a token.
    fail(
      doc.errors.map((e) => `not valid YAML or JSON: ${e.message.split("\n")[0]}`),
      doc.errors[0],
    );
  }
  const result = fileSchema.safeParse(doc.toJS());
  if (!result.success) {
    fail(result.error.issues.map((issue) => `${pathOf(issue.path)}: ${issue.message}`));
    throw new Error("unreachable");
  }
  const problems: string[] = [];
  const seen = new Map<string, number>();
  const entries = result.data.tokens.map((entry, i) => {
    const digest =
      entry.token !== undefined
        ? sha256(entry.token)
        : Buffer.from(entry.token_sha256 ?? "", "hex");
    const hex = digest.toString("hex");
    const first = seen.get(hex);
    if (first !== undefined) problems.push(`tokens[${i}]: the same token as tokens[${first}]`);
    else seen.set(hex, i);
    const identity: Identity = {
      tenant: entry.tenant,
      principal: entry.principal ?? `static:${hex.slice(0, 12)}`,
      roles: new Set<Role>(entry.roles),
      ...(entry.commands !== undefined && { commands: Object.freeze([...entry.commands]) }),
    };
    return { digest, identity: Object.freeze(identity) };
  });
  if (problems.length > 0) fail(problems);
  return new StaticTokens(entries, file);
}

/** The hex SHA-256 of a token, the form `token_sha256` expects. */
export function tokenSha256(token: string): string {
  return sha256(token).toString("hex");
}

function sha256(token: string): Buffer {
  return crypto.createHash("sha256").update(token, "utf8").digest();
}

/** `tokens.0.roles.1` → `tokens[0].roles[1]`; the root is `(file)`. */
function pathOf(path: readonly PropertyKey[]): string {
  if (path.length === 0) return "(file)";
  return path
    .map((p, i) => (typeof p === "number" ? `[${p}]` : `${i === 0 ? "" : "."}${String(p)}`))
    .join("");
}
