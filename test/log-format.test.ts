import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { usePretty } from "../runtime/logger.ts";
import { removeDir, startService, TEST_SECRET } from "./helpers/service.ts";

const ROOT = new URL("../", import.meta.url).pathname;
// eslint-disable-next-line no-control-regex -- ESC starts the ANSI colour codes being matched
const ANSI = /\x1b\[[0-9;]*m/g;

/**
 * `npm start`'s entry with stdout on a pseudo-terminal (util-linux `script`), as a person starting it
 * in a shell would. Resolves everything printed up to the ready line, then stops the process.
 */
async function startOnTerminal(env: Record<string, string>): Promise<string> {
  const dataDir = mkdtempSync(join(tmpdir(), "routing-tty-"));
  const proc = spawn("script", ["-qfec", `${process.execPath} --import tsx bin/main.ts`, "/dev/null"], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      TERM: "xterm",
      ROUTING_HTTP_PORT: "0",
      ROUTING_MQTT_PORT: "0",
      ROUTING_HOST: "127.0.0.1",
      ROUTING_DATA_DIR: dataDir,
      ROUTING_JWT_SECRET: TEST_SECRET,
      ...env,
    },
    stdio: ["pipe", "pipe", "pipe"],
    detached: true,
  });
  let out = "";
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  try {
    return await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not ready:\n${out}`)), 30_000);
      proc.stdout.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        if (/routing ready: http=\d+[^\n]*\n/.test(out.replace(ANSI, ""))) {
          clearTimeout(timer);
          resolve(out);
        }
      });
      void exited.then(() => reject(new Error(`exited before ready:\n${out}`)));
    });
  } finally {
    process.kill(-proc.pid!, "SIGTERM");
    await exited;
    removeDir(dataDir);
  }
}

describe("log format", () => {
  it("auto: human-readable lines (pino-pretty) on a terminal, ending in the one ready line", async () => {
    const out = (await startOnTerminal({})).replace(ANSI, "").replace(/\r/g, "");
    const lines = out.split("\n").filter((l) => l.trim() !== "");
    expect(lines.some((l) => l.startsWith("{"))).toBe(false);
    expect(lines.at(-1)).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: routing: routing ready: http=\d+ mqtt=\d+ engine=uws /);
    // Moleculer's own start-up chatter stays out at info: a handful of lines, not thirty.
    expect(lines.length).toBeLessThanOrEqual(5);
  }, 60_000);

  it("json forced on a terminal", async () => {
    const out = (await startOnTerminal({ ROUTING_LOG_FORMAT: "json" })).replace(/\r/g, "");
    const lines = out.split("\n").filter((l) => l.trim() !== "");
    for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow();
    expect(JSON.parse(lines.at(-1)!)).toMatchObject({ level: 30, msg: expect.stringMatching(/^routing ready: /) });
  }, 60_000);

  it("pretty forced when stdout is a pipe (JSON otherwise, as test/logs.test.ts checks)", async () => {
    const svc = await startService({ ROUTING_LOG_FORMAT: "pretty" });
    try {
      const lines = svc
        .output()
        .split("\n")
        .filter((l) => l.trim() !== "");
      expect(lines.some((l) => l.startsWith("{"))).toBe(false);
      expect(lines.at(-1)).toMatch(/INFO: routing: routing ready: /);
    } finally {
      await svc.stop();
      removeDir(svc.dataDir);
    }
  }, 60_000);

  it("chooses by the setting and the terminal", () => {
    expect([usePretty("auto", true), usePretty("auto", false), usePretty("json", true), usePretty("pretty", false)]).toEqual([true, false, false, true]);
  });
});
