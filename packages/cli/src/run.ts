import {
  globalOptions,
  parseCommandArgs,
  plaintextTokenWarning,
  splitCommand,
  type GlobalOptions,
} from "./args";
import { RouterClients } from "./clients";
import type { Command, Output } from "./command";
import { COMMANDS } from "./commands";
import { describeError, ExitCode, UsageError } from "./errors";
import { commandHelp, groupHelp, mainHelp } from "./help";

/** What a run of the CLI is given besides its arguments. */
export interface RunEnvironment {
  readonly io: Output;
  readonly env: NodeJS.ProcessEnv;
  /** Aborted on Ctrl-C; commands that are not interruptible are left to exit at once. */
  readonly interrupted: AbortSignal;
}

const GROUPS = new Set(
  COMMANDS.filter((c) => c.name.includes(" ")).map((c) => c.name.split(" ")[0]!),
);

function find(words: readonly string[]): Command {
  const name = words.join(" ");
  const command = COMMANDS.find((c) => c.name === name);
  if (command) return command;
  const [group, sub] = words;
  if (group && GROUPS.has(group)) {
    const subs = COMMANDS.filter((c) => c.name.startsWith(`${group} `)).map(
      (c) => c.name.split(" ")[1],
    );
    throw new UsageError(
      sub
        ? `unknown ${group} subcommand: ${sub}`
        : `${group} needs a subcommand: ${subs.join(", ")}`,
      `run \`codeq ${group} ${subs[0]} --help\` or \`codeq --help\``,
    );
  }
  throw new UsageError(`unknown command: ${name}`, "run `codeq --help` for the commands");
}

/**
 * Runs one `codeq` invocation: finds the command, parses its arguments, calls the
 * router and prints. Resolves to the exit code; never throws.
 */
export async function run(argv: readonly string[], environment: RunEnvironment): Promise<number> {
  const { io, env } = environment;
  let global: GlobalOptions | undefined;
  let clients: RouterClients | undefined;
  let command: Command | undefined;
  try {
    const { words, rest } = splitCommand(argv, (w) => GROUPS.has(w));
    if (words[0] === "help") {
      const { positionals } = parseCommandArgs(rest, {});
      const topic = positionals.length > 0 ? find(positionals) : undefined;
      for (const line of topic ? commandHelp(topic) : mainHelp(COMMANDS)) io.out(line);
      return ExitCode.OK;
    }
    const groupOnly = words.length === 1 && GROUPS.has(words[0]!);
    if (words.length === 0 || groupOnly) {
      if (rest.includes("--help") || rest.includes("-h")) {
        for (const line of groupOnly ? groupHelp(words[0]!, COMMANDS) : mainHelp(COMMANDS))
          io.out(line);
        return ExitCode.OK;
      }
      if (!groupOnly)
        throw new UsageError("missing command", "run `codeq --help` for the commands");
    }
    command = find(words);
    const { values, positionals } = parseCommandArgs(rest, command.options);
    if (values.help === true) {
      for (const line of commandHelp(command)) io.out(line);
      return ExitCode.OK;
    }
    global = globalOptions(values, env);
    if (
      global.token !== undefined &&
      (global.roles.length > 0 || (global.tenantGiven && !command.queueTenant))
    )
      throw new UsageError(
        "--tenant and --roles state an identity without proof; with a token, its tenant and roles are used",
        command.queueTenant ? "(--tenant still names the queue's tenant here)" : undefined,
      );
    const plaintext = plaintextTokenWarning(global, env);
    if (plaintext) io.err(plaintext);
    // a queue's tenant named with --tenant is not who calls: the caller is stated as
    // CODEQ_TENANT (or the default), as without --tenant
    const caller =
      command.queueTenant && global.tenantGiven ? { ...global, tenant: global.envTenant } : global;
    clients = new RouterClients(caller, command.group === "dlq");
    return await command.run({
      global,
      values,
      positionals,
      clients,
      io,
      interrupted: environment.interrupted,
    });
  } catch (err) {
    const { code, lines } = describeError(err, global);
    for (const line of lines) io.err(line);
    if (err instanceof UsageError && !err.hint && command)
      io.err(`run \`codeq ${command.name} --help\` for its usage`);
    return code;
  } finally {
    clients?.close();
  }
}

/** The command named in `argv`, if any (main reads how it handles Ctrl-C and a closed stdout). */
export function commandOf(argv: readonly string[]): Command | undefined {
  try {
    const { words } = splitCommand(argv, (w) => GROUPS.has(w));
    return COMMANDS.find((c) => c.name === words.join(" "));
  } catch {
    return undefined;
  }
}
