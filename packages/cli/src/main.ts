#!/usr/bin/env node
import { installLeanAsyncBind } from "@codeq/common";
import { STDOUT_CLOSED } from "./command";
import { commandOf, run } from "./run";

/** The `codeq` binary: runs one command and exits with its code. */
async function main(): Promise<void> {
  installLeanAsyncBind();
  const argv = process.argv.slice(2);
  const interrupted = new AbortController();
  const command = commandOf(argv);
  const interruptible = command?.interruptible === true;
  const onSigint = () => {
    // a command that follows something (assign --wait, tail) winds down on the
    // first Ctrl-C; anything else, or a second Ctrl-C, exits at once
    if (!interruptible || interrupted.signal.aborted) process.exit(130);
    interrupted.abort();
  };
  process.on("SIGINT", onSigint);
  // a reader that went away (codeq … | head) is not an error of ours: a command that
  // winds down then does so (what it did is said on stderr), anything else exits
  const windsDown = interruptible && command?.stopsWhenOutputCloses === true;
  let stdoutGone = false;
  for (const stream of [process.stdout, process.stderr])
    stream.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code !== "EPIPE") throw err;
      if (stream !== process.stdout || !windsDown || interrupted.signal.aborted)
        process.exit(process.exitCode ?? 0);
      stdoutGone = true;
      interrupted.abort(STDOUT_CLOSED);
    });
  process.exitCode = await run(argv, {
    env: process.env,
    interrupted: interrupted.signal,
    io: {
      out: (line) => stdoutGone || process.stdout.write(`${line}\n`),
      err: (line) => process.stderr.write(`${line}\n`),
      errRaw: (text) => process.stderr.write(text),
      errIsTTY: process.stderr.isTTY === true,
      outIsTTY: process.stdout.isTTY === true,
    },
  });
  process.off("SIGINT", onSigint);
}

void main();
