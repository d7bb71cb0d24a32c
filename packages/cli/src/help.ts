import { GLOBAL_OPTIONS, type OptionSpecs } from "./args";
import type { Command } from "./command";

function optionLines(options: OptionSpecs): string[] {
  const left = Object.entries(options).map(
    ([name, o]) => `${o.short ? `-${o.short}, ` : ""}--${name}${o.value ? ` ${o.value}` : ""}`,
  );
  const width = Math.max(0, ...left.map((l) => l.length));
  return Object.values(options).map((o, i) => `  ${left[i]!.padEnd(width)}  ${o.description}`);
}

const IDENTITY = [
  "Identity: with a token (CODEQ_TOKEN, or --token-file), the router takes the",
  "tenant and roles from it. Without one, --tenant and --roles are stated in the",
  "x-codeq-tenant and x-codeq-roles metadata without proof; a router accepts them",
  "only when it runs with development identity on (CODEQ_ROUTER_DEV_IDENTITY), as",
  "the local cluster does. --tls, --tls-ca, --tls-cert and --tls-key reach a router",
  "that serves TLS (and mutual TLS). A token sent without TLS off this host is warned",
  "about on stderr (CODEQ_PLAINTEXT_TOKEN_OK=1: the path is protected otherwise).",
];

const EXIT_CODES = [
  "Exit codes:",
  "  0    ok",
  "  1    usage error: unknown command or option, missing argument, unreadable file",
  "  2    the server refused: its gRPC status and message are printed,",
  "       e.g. FAILED_PRECONDITION: …",
  "  3    the router is unreachable or did not answer in time",
  "       (UNAVAILABLE, DEADLINE_EXCEEDED)",
  "  4    assign --wait: the migration ended ABORTED (or ABANDONED)",
  "  5    verify: a check failed or a shard did not answer; shards --check: a shard",
  "       is unhealthy or its breaker is not CLOSED; stats, dlq list: a shard did not",
  "       answer (what is printed leaves it out); shard default: the change is not",
  "       finished yet (run it again)",
  "  130  interrupted (Ctrl-C): assign --wait and tail stop following (the",
  "       migration goes on); dlq redrive and purge stop after the call under way,",
  "       enqueue --count after the batch under way",
];

/** `codeq --help`: the commands, global options, identity and exit codes. */
export function mainHelp(commands: readonly Command[]): string[] {
  const width = Math.max(...commands.map((c) => c.name.length));
  const list = (group: Command["group"]) =>
    commands.filter((c) => c.group === group).map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    "codeq: operate and try out a codeQ cluster through a router.",
    "",
    "Usage: codeq [global options] COMMAND [arguments] [options]",
    "       codeq COMMAND --help",
    "",
    "Operator commands (AdminService; the admin role is stated):",
    ...list("admin"),
    "",
    "Queue commands (QueueService, on the queues of the stated tenant):",
    ...list("queue"),
    "",
    "Dead-letter queue commands (QueueService, the stated tenant's; the admin role is stated):",
    ...list("dlq"),
    "",
    "Global options (before or after the command):",
    ...optionLines(GLOBAL_OPTIONS),
    "",
    "Output: readable tables on stdout; --json prints the responses as JSON",
    "(enums by name, bytes as base64). Progress and notes go to stderr.",
    "",
    ...IDENTITY,
    "",
    ...EXIT_CODES,
  ];
}

/** `codeq GROUP --help` (as `codeq dlq --help`): the usage of each of its subcommands. */
export function groupHelp(group: string, commands: readonly Command[]): string[] {
  const subs = commands.filter((c) => c.name.startsWith(`${group} `));
  return [
    ...subs.flatMap((c) => [`codeq ${c.name} ${c.args}`, `    ${c.summary}`]),
    "",
    `Run \`codeq ${group} SUBCOMMAND --help\` for the options of one.`,
  ];
}

/** `codeq COMMAND --help`. */
export function commandHelp(command: Command): string[] {
  const own = Object.keys(command.options);
  const globals = Object.fromEntries(
    Object.entries(GLOBAL_OPTIONS).filter(([name]) => !own.includes(name)),
  );
  return [
    `Usage: codeq ${command.name}${command.args ? ` ${command.args}` : ""}`,
    "",
    `${command.summary[0]!.toUpperCase()}${command.summary.slice(1)}.`,
    ...(command.details ?? []),
    ...(own.length > 0 ? ["", "Options:", ...optionLines(command.options)] : []),
    "",
    "Global options:",
    ...optionLines(globals),
    "",
    "Exit codes: 0 ok, 1 usage error, 2 refused by the server, 3 unreachable (see codeq --help).",
    "Identity: development mode only (x-codeq-tenant / x-codeq-roles, see codeq --help).",
  ];
}
