import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import { freePort } from "./ports.ts";

/** A running Google Cloud emulator on a loopback port. */
export interface Emulator {
  /** `127.0.0.1:<port>`, what the client libraries take as emulator host. */
  readonly host: string;
  /** Kills the emulator's whole process group (the launcher and its JVM) and waits until it is gone. */
  stop(): Promise<void>;
}

const SDK = "/usr/lib/google-cloud-sdk/platform";
const PUBSUB_LAUNCHER = `${SDK}/pubsub-emulator/bin/cloud-pubsub-emulator`;
const FIRESTORE_JAR = `${SDK}/cloud-firestore-emulator/cloud-firestore-emulator.jar`;
/** The jar has no main manifest: the class its own launcher script runs. */
const FIRESTORE_MAIN = "com.google.cloud.datastore.emulator.firestore.CloudFirestore";
const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;
/** Output kept for the error message of an emulator that did not start. */
const OUTPUT_LIMIT = 8_000;

/** Process groups still running; killed if the test process exits without stopping them. */
const running = new Set<number>();
let exitHookInstalled = false;

/** Starts the Pub/Sub emulator (Debian package google-cloud-cli-pubsub-emulator). */
export function startPubSubEmulator(): Promise<Emulator> {
  requireFile(PUBSUB_LAUNCHER, "Pub/Sub emulator", "google-cloud-cli-pubsub-emulator");
  return start("Pub/Sub emulator", (port) => [PUBSUB_LAUNCHER, [`--host=127.0.0.1`, `--port=${port}`]]);
}

/** Starts the Firestore emulator (Debian package google-cloud-cli-firestore-emulator; needs Java). */
export function startFirestoreEmulator(): Promise<Emulator> {
  requireFile(FIRESTORE_JAR, "Firestore emulator", "google-cloud-cli-firestore-emulator");
  const java = process.env.JAVA ?? "java";
  return start("Firestore emulator", (port) => [
    java,
    ["-Duser.language=en", "-cp", FIRESTORE_JAR, FIRESTORE_MAIN, "start", "--host=127.0.0.1", `--port=${port}`],
  ]);
}

function requireFile(file: string, what: string, debianPackage: string): void {
  if (!fs.existsSync(file)) {
    throw new Error(`${what} not found at ${file}: install the Debian package ${debianPackage} (apt-get install ${debianPackage}; it needs Java 17)`);
  }
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // Already gone.
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const pgid of running) killGroup(pgid, "SIGKILL");
  });
}

async function start(what: string, command: (port: number) => [string, string[]]): Promise<Emulator> {
  const port = await freePort();
  const [file, args] = command(port);
  // Its own process group, so stop() reaches the JVM the launcher script starts.
  const proc = spawn(file, args, { detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-OUTPUT_LIMIT);
  };
  proc.stdout?.on("data", keep);
  proc.stderr?.on("data", keep);
  const exited = new Promise<void>((resolve) => {
    proc.once("exit", () => resolve());
    proc.once("error", (err) => {
      output += `\n${String(err)}`;
      resolve();
    });
  });
  const pgid = proc.pid;
  if (pgid === undefined) {
    await exited;
    throw new Error(`${what} did not start (${file}):\n${output}`);
  }
  running.add(pgid);
  installExitHook();
  const host = `127.0.0.1:${port}`;
  const stop = async () => {
    if (!running.has(pgid)) return;
    killGroup(pgid, "SIGTERM");
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    while (groupAlive(pgid) && Date.now() < deadline) await sleep(50);
    if (groupAlive(pgid)) killGroup(pgid, "SIGKILL");
    while (groupAlive(pgid)) await sleep(20);
    running.delete(pgid);
  };
  try {
    await waitReady(proc, host, exited);
  } catch (err) {
    await stop();
    throw new Error(`${what} did not become ready on ${host}: ${(err as Error).message}\n${output}`, { cause: err });
  }
  return { host, stop };
}

/** Both emulators answer `GET /` with 200 once they serve requests. */
async function waitReady(proc: ChildProcess, host: string, exited: Promise<void>): Promise<void> {
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (gone) throw new Error(`the process exited (code ${String(proc.exitCode)})`);
    if (Date.now() > deadline) throw new Error(`timed out after ${READY_TIMEOUT_MS} ms`);
    try {
      const res = await fetch(`http://${host}/`, { signal: AbortSignal.timeout(1_000) });
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {
      // Not listening yet.
    }
    await sleep(100);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
