import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";

const ROOT = new URL("../../", import.meta.url).pathname;

/** An npm script as the README runs it, in its own process group (npm -> sh -> node), output collected. */
export class NpmRun {
  readonly proc: ChildProcessWithoutNullStreams;
  output = "";
  readonly exited: Promise<number | null>;
  #listeners: Array<() => void> = [];

  constructor(args: string[], env: Record<string, string>) {
    this.proc = spawn("npm", args, { cwd: ROOT, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, detached: true });
    const onData = (chunk: Buffer) => {
      // Without colours: moleculer-repl prints call results through util.inspect with colours on.
      // eslint-disable-next-line no-control-regex -- ESC starts the ANSI colour codes being stripped
      this.output += chunk.toString().replace(/\x1b\[[0-9;]*m/g, "");
      for (const l of this.#listeners) l();
    };
    this.proc.stdout.on("data", onData);
    this.proc.stderr.on("data", onData);
    this.exited = new Promise((resolve) => this.proc.once("exit", (code) => resolve(code)));
  }

  /** Resolves the first match of `pattern` in the output from `from` on. */
  waitFor(pattern: RegExp, from = 0, timeoutMs = 30_000): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = pattern.exec(this.output.slice(from));
        if (!m) return false;
        clearTimeout(timer);
        this.#listeners = this.#listeners.filter((l) => l !== listener);
        resolve(m);
        return true;
      };
      const listener = () => void check();
      const timer = setTimeout(() => reject(new Error(`no ${pattern} in:\n${this.output.slice(from)}`)), timeoutMs);
      if (!check()) this.#listeners.push(listener);
    });
  }

  /** Types a line and waits for its answer. */
  async type(line: string, answer: RegExp): Promise<string> {
    const from = this.output.length;
    this.proc.stdin.write(line + "\n");
    await this.waitFor(answer, from);
    return this.output.slice(from);
  }

  /** SIGTERM to the whole group (npm forwards it, but the group is what this test started). */
  async stop(): Promise<number | null> {
    if (this.proc.exitCode === null) process.kill(-this.proc.pid!, "SIGTERM");
    return this.exited;
  }
}
