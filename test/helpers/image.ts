import { execFileSync, execSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { execForm, parseDockerfile, type Stage } from "./dockerfile.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
/** The node images' unprivileged `node` user. */
export const NODE_UID = 1000;

export interface ReplayedImage {
  readonly stages: readonly Stage[];
  /** The build stage's /app after its last RUN. */
  readonly buildDir: string;
  /** The runtime stage's /app: only what its COPY lines took from the build stage. */
  readonly appDir: string;
  /** The runtime stage's ENV, with ROUTING_DATA_DIR pointing at `dataDir`. */
  readonly env: Record<string, string>;
  /** Stands in for the image's /data volume, owned by the runtime user. */
  readonly dataDir: string;
  readonly cmd: readonly string[];
  readonly healthcheck: readonly string[];
  /** uid/gid to spawn with: the `node` user when this test runs as root, else the current user. */
  readonly user: { uid?: number; gid?: number };
}

function sourceFiles(): string[] {
  const ignored = readFileSync(join(ROOT, ".dockerignore"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  const matches = (file: string, pattern: string): boolean =>
    pattern.startsWith("*.") ? file.endsWith(pattern.slice(1)) : file === pattern || file.startsWith(`${pattern}/`);
  const files = execFileSync("git", ["ls-files", "-co", "--exclude-standard"], { cwd: ROOT, encoding: "utf8" }).split("\n").filter(Boolean);
  return files.filter((f) => existsSync(join(ROOT, f)) && !ignored.some((p) => matches(f, p)));
}

function envOf(value: string): Record<string, string> {
  return Object.fromEntries(value.split(/\s+/).map((pair) => pair.split("=", 2) as [string, string]));
}

/**
 * Replays the Dockerfile's two stages in temp dirs, outside Docker (no engine here, and base
 * images cannot be pulled): the build stage's commands run as written, except its `npm ci`, whose
 * result is the worktree's node_modules (installed by `npm ci` from the same package-lock.json)
 * copied in; the runtime stage's COPY lines take from the build dir exactly what they name. What
 * remains untested is the base images themselves.
 */
export function replayDockerfile(): ReplayedImage {
  const stages = parseDockerfile(readFileSync(join(ROOT, "Dockerfile"), "utf8"));
  const [build, runtime] = stages;
  const root = mkdtempSync(join(tmpdir(), "routing-image-"));
  chmodSync(root, 0o755);
  const buildDir = join(root, "build");
  mkdirSync(buildDir);
  const pathEnv = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? root };
  for (const step of build.steps) {
    if (step.op === "COPY" && step.value === ". .") {
      for (const file of sourceFiles()) cpSync(join(ROOT, file), join(buildDir, file), { recursive: true });
    } else if (step.op === "COPY") {
      const parts = step.value.split(/\s+/);
      for (const file of parts.slice(0, -1)) cpSync(join(ROOT, file), join(buildDir, file));
    } else if (step.op === "RUN" && /^npm ci\b/.test(step.value)) {
      execFileSync("cp", ["-a", join(ROOT, "node_modules"), join(buildDir, "node_modules")]);
    } else if (step.op === "RUN") {
      execSync(step.value, { cwd: buildDir, env: pathEnv, stdio: "pipe" });
    }
  }

  const appDir = join(root, "app");
  const dataDir = join(root, "data");
  mkdirSync(appDir);
  let env: Record<string, string> = {};
  let cmd: string[] | undefined;
  let healthcheck: string[] | undefined;
  let userName: string | undefined;
  for (const step of runtime.steps) {
    if (step.op === "ENV") env = { ...env, ...envOf(step.value) };
    if (step.op === "USER") userName = step.value;
    if (step.op === "CMD") cmd = execForm(step.value);
    if (step.op === "HEALTHCHECK") healthcheck = execForm(step.value.slice(step.value.indexOf("CMD ") + 4).trim());
    if (step.op === "COPY") {
      const match = /^--from=(\S+)\s+\/app\/(\S+)\s+\.\/(\S+)$/.exec(step.value);
      if (!match) throw new Error(`unexpected COPY in the runtime stage: ${step.value}`);
      const target = join(appDir, match[3]);
      mkdirSync(dirname(target), { recursive: true });
      execFileSync("cp", ["-a", join(buildDir, match[2]), target]);
    }
    if (step.op === "RUN") {
      // The one RUN of the runtime stage prepares the data volume for the runtime user.
      if (!/^mkdir -p \/data && chown node:node \/data$/.test(step.value)) throw new Error(`unexpected RUN in the runtime stage: ${step.value}`);
      mkdirSync(dataDir);
    }
  }
  if (!cmd || !healthcheck) throw new Error("the runtime stage needs an exec-form CMD and HEALTHCHECK");
  const asRoot = process.getuid?.() === 0;
  if (asRoot && userName === "node") chownSync(dataDir, NODE_UID, NODE_UID);
  return {
    stages,
    buildDir,
    appDir,
    env: { ...env, ROUTING_DATA_DIR: dataDir },
    dataDir,
    cmd,
    healthcheck,
    user: asRoot && userName === "node" ? { uid: NODE_UID, gid: NODE_UID } : {},
  };
}

export interface ContainerProcess {
  readonly proc: ChildProcess;
  readonly port: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
}

/** Runs the image's CMD as the container would: that one process, in its own process group, as the image's user. */
export async function runContainerCmd(image: ReplayedImage, env: Record<string, string>): Promise<ContainerProcess> {
  const [file, ...args] = image.cmd;
  const proc = spawn(file === "node" ? process.execPath : file, args, {
    cwd: image.appDir,
    env: { PATH: process.env.PATH, HOME: image.dataDir, ...image.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
    ...image.user,
  });
  let out = "";
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ready:\n${out}`)), 60_000);
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      const match = /routing ready: http=(\d+)[^\n]*\n/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    };
    proc.stdout?.on("data", onData);
    proc.stderr?.on("data", onData);
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`exited (${code}) before ready:\n${out}`));
    });
  });
  return { proc, port, exited, output: () => out };
}

/** Runs the image's HEALTHCHECK command against a port; resolves its exit code. */
export function runHealthcheck(image: ReplayedImage, port: number): Promise<number | null> {
  const [file, ...args] = image.healthcheck;
  const proc = spawn(file === "node" ? process.execPath : file, args, { env: { PATH: process.env.PATH, ROUTING_HTTP_PORT: String(port) }, stdio: "ignore" });
  return new Promise((resolve) => proc.once("exit", (code) => resolve(code)));
}

/** Every process whose process group is `pgid` (a container's processes when its PID 1 is `pgid`). */
export function processGroup(pgid: number): number[] {
  const found: number[] = [];
  for (const entry of execFileSync("ls", ["/proc"], { encoding: "utf8" }).split("\n")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its closing paren.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) === pgid) found.push(Number(entry));
    } catch {
      // the process ended while listing
    }
  }
  return found;
}
