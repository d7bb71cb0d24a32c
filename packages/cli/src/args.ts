import * as fs from "node:fs";
import { parseArgs } from "node:util";
import { UsageError } from "./errors";
import { NAME_PATTERN as NAME } from "@codeq/common";

/** One option of a command: how it parses and the line `--help` shows for it. */
export interface OptionSpec {
  readonly type: "string" | "boolean";
  readonly short?: string;
  /** Placeholder of the value in help, e.g. "SHARD". */
  readonly value?: string;
  readonly description: string;
}

export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

/** Parsed option values by long name. */
export type Values = Readonly<Record<string, string | boolean | undefined>>;

/** Options every command accepts, before or after the command name. */
export const GLOBAL_OPTIONS: OptionSpecs = {
  router: {
    type: "string",
    value: "HOST:PORT",
    description: "router to talk to (env CODEQ_ROUTER, default 127.0.0.1:7300)",
  },
  tenant: {
    type: "string",
    value: "T",
    description:
      "without a token: tenant stated in x-codeq-tenant (env CODEQ_TENANT, default: default)",
  },
  roles: {
    type: "string",
    value: "R,R",
    description: "without a token: roles stated in x-codeq-roles (admin commands add admin)",
  },
  "token-file": {
    type: "string",
    value: "FILE",
    description: "send the bearer token in FILE (env CODEQ_TOKEN_FILE; or CODEQ_TOKEN itself)",
  },
  tls: {
    type: "boolean",
    description:
      "TLS to the router, its certificate checked against the system's CAs (env CODEQ_TLS=1)",
  },
  "tls-ca": {
    type: "string",
    value: "FILE",
    description: "TLS, the router's certificate checked against this CA (env CODEQ_TLS_CA_FILE)",
  },
  "tls-cert": {
    type: "string",
    value: "FILE",
    description: "TLS with this client certificate, for mutual TLS (env CODEQ_TLS_CERT_FILE)",
  },
  "tls-key": {
    type: "string",
    value: "FILE",
    description: "the client certificate's private key (env CODEQ_TLS_KEY_FILE)",
  },
  json: { type: "boolean", description: "print the responses as JSON instead of tables" },
  timeout: {
    type: "string",
    value: "MS",
    description: "deadline of each call in ms (default 10000; tail's stream has none)",
  },
  help: { type: "boolean", short: "h", description: "show help (of a command after its name)" },
};

/** The contents of the TLS files given: each undefined when not given. */
export interface TlsFiles {
  readonly ca: Buffer | undefined;
  readonly cert: Buffer | undefined;
  readonly key: Buffer | undefined;
}

/** What the global options say, with the environment and defaults filled in. */
export interface GlobalOptions {
  readonly router: string;
  readonly tenant: string;
  /** True when --tenant was given on the command line (not from the environment). */
  readonly tenantGiven: boolean;
  /** The tenant without --tenant: CODEQ_TENANT, or "default". */
  readonly envTenant: string;
  readonly roles: readonly string[];
  /**
   * The bearer token to send (identity from the credential; nothing is stated in
   * development-identity metadata then), or undefined.
   */
  readonly token: string | undefined;
  /** TLS to the router, or undefined for plaintext. */
  readonly tls: TlsFiles | undefined;
  readonly json: boolean;
  readonly timeoutMs: number;
  readonly help: boolean;
}

function parseConfig(options: OptionSpecs) {
  return Object.fromEntries(
    Object.entries(options).map(([name, o]) => [
      name,
      o.short ? { type: o.type, short: o.short } : { type: o.type },
    ]),
  );
}

/** Turns util.parseArgs' messages into one short line naming the culprit. */
function usageFrom(err: unknown): UsageError {
  const e = err as { code?: string; message?: string };
  const quoted = /'([^']+)'/.exec(e.message ?? "")?.[1] ?? "";
  switch (e.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return new UsageError(`unknown option ${quoted}`);
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      // the next argument starts with a dash: another option, or a value such as -1
      if (/ambiguous/.test(e.message ?? ""))
        return new UsageError(
          `option ${quoted} needs a value; one that starts with "-" is given as ${quoted}=VALUE`,
        );
      return new UsageError(
        quoted.includes("<value>")
          ? `option ${quoted.replace(/ <value>$/, "")} needs a value`
          : `option ${quoted.split(" ")[0]} takes no value`,
      );
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return new UsageError(`unexpected argument ${quoted}`);
    default:
      return new UsageError(e.message ?? String(err));
  }
}

/**
 * Finds the command words: the first positional argument, and the second too
 * when `isGroup` says the first names a group of subcommands (as `dlq`). Global
 * options may come before them. Returns the words and the other arguments.
 */
export function splitCommand(
  argv: readonly string[],
  isGroup: (word: string) => boolean,
): { words: string[]; rest: string[] } {
  const { tokens } = parseArgs({
    args: [...argv],
    options: parseConfig(GLOBAL_OPTIONS),
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const positions: number[] = [];
  for (const t of tokens) {
    if (t.kind !== "positional") continue;
    positions.push(t.index);
    const first = argv[positions[0]!]!;
    if (positions.length === 2 || !isGroup(first)) break;
  }
  const words = positions.map((i) => argv[i]!);
  return { words, rest: argv.filter((_, i) => !positions.includes(i)) };
}

/** Parses a command's arguments (its options plus the global ones); unknown options are usage errors. */
export function parseCommandArgs(
  argv: readonly string[],
  options: OptionSpecs,
): { values: Values; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      options: parseConfig({ ...GLOBAL_OPTIONS, ...options }),
      strict: true,
      allowPositionals: true,
    });
    return { values: values as Values, positionals };
  } catch (err) {
    throw usageFrom(err);
  }
}

/** The global options with the environment and defaults applied. */
export function globalOptions(values: Values, env: NodeJS.ProcessEnv): GlobalOptions {
  const router = str(values, "router") ?? env.CODEQ_ROUTER ?? "127.0.0.1:7300";
  if (!/^[^\s:]+:\d{1,5}$/.test(router) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(router))
    throw new UsageError(`--router must be host:port, got ${JSON.stringify(router)}`);
  const envTenant = env.CODEQ_TENANT ?? "default";
  if (!NAME.test(envTenant)) throw new UsageError(`CODEQ_TENANT must match ${NAME.source}`);
  const tenant = str(values, "tenant") ?? envTenant;
  if (!NAME.test(tenant)) throw new UsageError(`--tenant must match ${NAME.source}`);
  const roles = (str(values, "roles") ?? "")
    .split(",")
    .map((r) => r.trim())
    .filter(Boolean);
  return {
    router,
    tenant,
    tenantGiven: str(values, "tenant") !== undefined,
    envTenant,
    roles,
    token: token(values, env),
    tls: tls(values, env),
    json: values.json === true,
    timeoutMs: int(values, "timeout", { min: 1, max: 3_600_000 }) ?? 10_000,
    help: values.help === true,
  };
}

/** A local file's contents; a usage error naming `what` when it cannot be read. */
function readLocal(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new UsageError(
      `${what}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? err})`,
    );
  }
}

/** The bearer token: --token-file, else CODEQ_TOKEN_FILE, else CODEQ_TOKEN. */
function token(values: Values, env: NodeJS.ProcessEnv): string | undefined {
  const file = str(values, "token-file") ?? (env.CODEQ_TOKEN_FILE || undefined);
  const given =
    file !== undefined ? readLocal(file, "--token-file").toString("utf8") : env.CODEQ_TOKEN;
  if (given === undefined || given === "") return undefined;
  const t = given.trim();
  // a header value: visible ASCII only (a token file with a stray line or a BOM is a mistake)
  if (!/^[\x21-\x7e]+$/.test(t))
    throw new UsageError(
      `${file !== undefined ? `the token in ${file}` : "CODEQ_TOKEN"} must be one word of visible ASCII characters`,
    );
  return t;
}

/** TLS files from the options or the environment; undefined for plaintext. */
function tls(values: Values, env: NodeJS.ProcessEnv): TlsFiles | undefined {
  const file = (name: string, variable: string) =>
    str(values, name) ?? (env[variable] || undefined);
  const ca = file("tls-ca", "CODEQ_TLS_CA_FILE");
  const cert = file("tls-cert", "CODEQ_TLS_CERT_FILE");
  const key = file("tls-key", "CODEQ_TLS_KEY_FILE");
  if ((cert === undefined) !== (key === undefined))
    throw new UsageError("--tls-cert and --tls-key go together (a client certificate and its key)");
  const on = values.tls === true || env.CODEQ_TLS === "1" || env.CODEQ_TLS === "true";
  if (!on && ca === undefined && cert === undefined) return undefined;
  return {
    ca: ca === undefined ? undefined : readLocal(ca, "--tls-ca"),
    cert: cert === undefined ? undefined : readLocal(cert, "--tls-cert"),
    key: key === undefined ? undefined : readLocal(key, "--tls-key"),
  };
}

/** A string option, or undefined when absent. */
export function str(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : undefined;
}

/** An integer option within bounds; a usage error otherwise. */
export function int(
  values: Values,
  name: string,
  bounds: { min: number; max: number },
): number | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < bounds.min || n > bounds.max)
    throw new UsageError(`--${name} must be an integer from ${bounds.min} to ${bounds.max}`);
  return n;
}

/** A comma-separated list option (empty entries dropped); [] when absent. */
export function list(values: Values, name: string): string[] {
  return (str(values, name) ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Exactly `count` positionals named by `names`, or at least one when `names` ends with "...". */
export function expectPositionals(positionals: readonly string[], names: readonly string[]): void {
  const variadic = names.at(-1)?.endsWith("...") ?? false;
  const required = names.length;
  if (positionals.length < required)
    throw new UsageError(`missing ${names[positionals.length]!.replace("...", "")}`);
  if (!variadic && positionals.length > required)
    throw new UsageError(`unexpected argument ${positionals[required]!}`);
}

/**
 * A warning when the bearer token would go to a router over plaintext off this host
 * (anyone on the path could read and replay it); undefined otherwise. A loopback router
 * (a local cluster, a port forward) is not warned about, nor any when
 * CODEQ_PLAINTEXT_TOKEN_OK=1 says the path is protected otherwise (a service mesh).
 */
export function plaintextTokenWarning(
  global: GlobalOptions,
  env: NodeJS.ProcessEnv = {},
): string | undefined {
  if (global.token === undefined || global.tls !== undefined) return undefined;
  if (env.CODEQ_PLAINTEXT_TOKEN_OK === "1") return undefined;
  const host = global.router
    .slice(0, global.router.lastIndexOf(":"))
    .replace(/^\[|\]$/g, "")
    .toLowerCase();
  if (
    host === "localhost" ||
    host.endsWith(".localhost") ||
    host === "::1" ||
    host === "0.0.0.0" ||
    /^127\.\d+\.\d+\.\d+$/.test(host)
  )
    return undefined;
  return `warning: the bearer token goes to ${global.router} without TLS, readable on the way; use --tls (or --tls-ca), or set CODEQ_PLAINTEXT_TOKEN_OK=1 where the path is protected otherwise`;
}
