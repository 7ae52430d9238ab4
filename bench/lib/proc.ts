/**
 * What the harness reads about processes and the machine from /proc (Linux): CPU time, RSS, file
 * descriptor limits. The generator and the servers share two cores, so every figure is reported
 * with the CPU each side used.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus, freemem, totalmem } from "node:os";

const TICKS_PER_SECOND = 100;

/** User + system CPU seconds a process has used so far (0 if it is gone). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th overall.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/** Resident set size in bytes (0 if the process is gone). */
export function rssBytes(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Measures the CPU a set of processes (and this one, every thread included) used over an interval. */
export function cpuMeter(pids: readonly number[]) {
  const t0 = performance.now();
  const own0 = process.cpuUsage();
  const others0 = pids.map(cpuSeconds);
  return () => {
    const wall = (performance.now() - t0) / 1000;
    const own = process.cpuUsage(own0);
    const ownSeconds = (own.user + own.system) / 1e6;
    const othersSeconds = pids.reduce((sum, pid, i) => sum + cpuSeconds(pid) - others0[i], 0);
    // Percent of one core; 200 is both cores of the test machine.
    return { generatorPct: (100 * ownSeconds) / wall, serverPct: (100 * othersSeconds) / wall, wallSeconds: wall };
  };
}

export interface NofileLimit {
  readonly soft: number;
  readonly hard: number;
  /** Why the limit could not be raised to what was asked, if it could not. */
  readonly note?: string;
}

function readNofile(pid: number): { soft: number; hard: number } {
  const match = /Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/.exec(readFileSync(`/proc/${pid}/limits`, "utf8"));
  const n = (s: string | undefined) => (s === undefined ? 1024 : s === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(s));
  return { soft: n(match?.[1]), hard: n(match?.[2]) };
}

/**
 * Raises this process's open-file limit (children spawned afterwards inherit it) with prlimit(1);
 * Node has no setrlimit. Raising the hard limit needs CAP_SYS_RESOURCE: without it the soft limit
 * goes up to the hard one and the note says so.
 */
export function raiseNofile(wanted: number): NofileLimit {
  const tryLimit = (soft: number, hard: number): string | undefined => {
    try {
      execFileSync("prlimit", ["--pid", String(process.pid), `--nofile=${soft}:${hard}`], { stdio: "pipe" });
      return undefined;
    } catch (err) {
      return err instanceof Error && "stderr" in err ? String((err as { stderr: Buffer }).stderr).trim() : String(err);
    }
  };
  const before = readNofile(process.pid);
  if (before.soft >= wanted) return before;
  const failed = tryLimit(wanted, Math.max(wanted, before.hard));
  if (failed === undefined) return readNofile(process.pid);
  tryLimit(before.hard, before.hard);
  const after = readNofile(process.pid);
  return { ...after, note: `could not raise RLIMIT_NOFILE to ${wanted} (hard limit ${after.hard}; ${failed})` };
}

export interface MachineInfo {
  readonly nproc: number;
  readonly cpuModel: string;
  readonly memTotal: string;
  readonly memFree: string;
  readonly node: string;
  readonly kernel: string;
}

export function machineInfo(): MachineInfo {
  let cpuModel = cpus()[0]?.model ?? "unknown";
  try {
    cpuModel = /model name\s*:\s*(.+)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.trim() ?? cpuModel;
  } catch {
    // Not Linux: os.cpus() said it.
  }
  let kernel: string;
  try {
    kernel = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
  } catch {
    kernel = process.platform;
  }
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;
  return { nproc: cpus().length, cpuModel, memTotal: gib(totalmem()), memFree: gib(freemem()), node: process.version, kernel };
}

/** `free -h` as printed, for the README (empty if the tool is missing). */
export function freeH(): string {
  try {
    return execFileSync("free", ["-h"], { encoding: "utf8" }).trim();
  } catch {
    return "";
  }
}
