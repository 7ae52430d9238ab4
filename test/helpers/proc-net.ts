import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/**
 * Who listens where, read from the kernel (/proc/net/tcp{,6} and /proc/<pid>/fd), not from what a
 * process says about itself. Linux only.
 */

/** Inodes of TCP sockets in LISTEN state on `port` (IPv4 and IPv6). */
export function listeningInodes(port: number): Set<string> {
  const inodes = new Set<string>();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const local = cols[1]!;
      const state = cols[3]!;
      const localPort = parseInt(local.slice(local.lastIndexOf(":") + 1), 16);
      if (state === "0A" && localPort === port) inodes.add(cols[9]!);
    }
  }
  return inodes;
}

/** The socket inodes a process holds open. */
export function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return inodes;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed in between
    }
  }
  return inodes;
}

/** Pids of every process holding one of the sockets listening on `port`. */
export function pidsListeningOn(port: number): Set<number> {
  const wanted = listeningInodes(port);
  const pids = new Set<number>();
  if (wanted.size === 0) return pids;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    for (const inode of socketInodes(Number(entry))) if (wanted.has(inode)) pids.add(Number(entry));
  }
  return pids;
}

/** A process and all its descendants (npm -> sh -> node). */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // exited in between
    }
  }
  const out: number[] = [];
  const visit = (pid: number) => {
    out.push(pid);
    for (const child of children.get(pid) ?? []) visit(child);
  };
  visit(root);
  return out;
}

/** Every TCP port some process of `pids` listens on. */
export function listeningPortsOf(pids: readonly number[]): number[] {
  const mine = new Set(pids.flatMap((pid) => [...socketInodes(pid)]));
  const ports: number[] = [];
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10 || cols[3] !== "0A" || !mine.has(cols[9]!)) continue;
      ports.push(parseInt(cols[1]!.slice(cols[1]!.lastIndexOf(":") + 1), 16));
    }
  }
  return ports;
}
