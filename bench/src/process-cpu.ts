import { execFileSync } from "node:child_process";
import * as fs from "node:fs";

/**
 * User + system CPU time, in clock ticks, of the process whose `/proc/<pid>/stat` is
 * `stat` (every thread of it: GC and libuv threads count). The fields are counted
 * after the command name, which is in parentheses and may itself hold spaces and
 * parentheses; utime and stime are fields 14 and 15 (proc(5)).
 */
export function statCpuTicks(stat: string): number {
  const end = stat.lastIndexOf(")");
  if (end < 0) throw new Error(`not a /proc/<pid>/stat line: ${stat.slice(0, 80)}`);
  // after ")" come field 3 (state) onwards, so field n is at index n - 3
  const fields = stat
    .slice(end + 1)
    .trim()
    .split(/\s+/);
  const [utime, stime] = [Number(fields[14 - 3]), Number(fields[15 - 3])];
  if (!Number.isSafeInteger(utime) || !Number.isSafeInteger(stime))
    throw new Error(`no utime/stime in /proc/<pid>/stat: ${stat.slice(0, 80)}`);
  return utime + stime;
}

let ticksPerSecond: number | undefined;

/** `getconf CLK_TCK`: the clock ticks per second /proc counts CPU time in (nearly always 100). */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    const out = execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim();
    const n = Number(out);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`getconf CLK_TCK said ${out}`);
    ticksPerSecond = n;
  }
  return ticksPerSecond;
}

/**
 * The CPU seconds (user + system) process `pid` has used so far, from /proc (Linux
 * only). Resolution is one clock tick (10 ms), so read it over windows of seconds.
 */
export function processCpuSeconds(pid: number): number {
  return statCpuTicks(fs.readFileSync(`/proc/${pid}/stat`, "utf8")) / clockTicksPerSecond();
}

/** Of /proc/stat's user nice system idle iowait irq softirq steal: all but idle and iowait. */
const BUSY_FIELDS = [0, 1, 2, 5, 6, 7];
/** Of the same: irq and softirq. */
const INTERRUPT_FIELDS = [5, 6];

/** The sum of `fields` of the `cpu` line (every CPU) of /proc/stat, in clock ticks. */
function statTicks(procStat: string, fields: readonly number[]): number {
  const line = /^cpu\s+(.*)$/m.exec(procStat)?.[1];
  const f = line?.trim().split(/\s+/).map(Number) ?? [];
  if (f.length < 8 || f.some((n) => !Number.isSafeInteger(n)))
    throw new Error(`no cpu line in /proc/stat: ${procStat.slice(0, 80)}`);
  return fields.reduce((sum, i) => sum + f[i]!, 0);
}

/**
 * CPU time, in clock ticks, every CPU of the machine spent not idle, from the `cpu`
 * line of `/proc/stat` (user, nice, system, irq, softirq and steal: time a virtual
 * machine's host gave to someone else counts as taken). Guest time is already in user.
 */
export function statBusyTicks(procStat: string): number {
  return statTicks(procStat, BUSY_FIELDS);
}

/**
 * CPU time, in clock ticks, every CPU spent in interrupts (irq and softirq). No
 * process's own CPU time includes it; on loopback it is mostly the kernel moving the
 * packets of the processes under test.
 */
export function statInterruptTicks(procStat: string): number {
  return statTicks(procStat, INTERRUPT_FIELDS);
}

/** The CPU seconds every process on the machine has used so far (Linux only). */
export function machineBusySeconds(): number {
  return statBusyTicks(fs.readFileSync("/proc/stat", "utf8")) / clockTicksPerSecond();
}

/** The CPU seconds the machine has spent in interrupts so far (Linux only). */
export function machineInterruptSeconds(): number {
  return statInterruptTicks(fs.readFileSync("/proc/stat", "utf8")) / clockTicksPerSecond();
}
