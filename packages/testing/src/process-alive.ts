import * as fs from "node:fs";

/**
 * True while a process with this PID exists and has not exited (signal 0 probes
 * without touching it). An exited child whose parent has not reaped it yet (a zombie:
 * its parent exited first, and some init processes never reap) counts as gone.
 */
export function isAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  return !isZombie(pid);
}

/** Linux: the state letter after the command name in /proc/<pid>/stat is Z. */
function isZombie(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat[stat.lastIndexOf(")") + 2] === "Z";
  } catch {
    return false; // no /proc: signal 0 is all there is
  }
}
