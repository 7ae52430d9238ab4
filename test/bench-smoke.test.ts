import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { Results } from "../bench/report/results.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/**
 * `npm run bench` in its smoke profile: a few hundred messages through the real service and the
 * bare uWS relay, and a few idle connections to each. Asserts the harness ran end to end and wrote
 * well-formed results; it asserts no timing (the figures belong to `npm run bench` on a quiet machine).
 */
describe("bench harness (smoke)", () => {
  const out = mkdtempSync(join(tmpdir(), "bench-smoke-"));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it("routes messages through the service and the relay and writes JSON, Markdown and an SVG chart", async () => {
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const proc = spawn(process.execPath, ["--import", "tsx", "bench/run.ts"], {
        cwd: ROOT,
        env: { ...process.env, BENCH_SMOKE: "1", BENCH_OUT: out },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let text = "";
      proc.stdout.on("data", (c: Buffer) => (text += c.toString()));
      proc.stderr.on("data", (c: Buffer) => (text += c.toString()));
      proc.once("exit", (exit) => resolve({ code: exit, output: text }));
    });
    expect(code, output).toBe(0);

    const results = JSON.parse(readFileSync(join(out, "latest.json"), "utf8")) as Results;
    expect(results.plan.profile).toBe("smoke");
    const route = results.route.rows;
    expect(route.map((r) => r.contender).sort()).toEqual(["relay-uws", "service-uws"]);
    for (const row of route) {
      expect(row.variant).toBe("ws/push/200B");
      expect(row.sent).toBeGreaterThan(100);
      expect(row.errors).toBe(0);
      expect(row.lost).toBe(0);
      expect(row.throughput.rounds).toHaveLength(results.plan.rounds);
      for (const figure of [row.throughput, row.p50, row.p99, row.p999, row.serverCpuPct, row.generatorCpuPct]) {
        expect(Number.isFinite(figure.median)).toBe(true);
        expect(figure.min).toBeLessThanOrEqual(figure.median);
        expect(figure.max).toBeGreaterThanOrEqual(figure.median);
      }
    }
    const conns = results.connections.rows;
    expect(conns.map((r) => r.contender).sort()).toEqual(["relay-uws", "service-uws"]);
    for (const row of conns) {
      expect(row.held.median).toBe(row.target);
      expect(row.failed).toBe(0);
      expect(Number.isFinite(row.rssMiB.median)).toBe(true);
      expect(Number.isFinite(row.connectRate.median)).toBe(true);
    }
    // Issue 16's seven targets, each printed with its baseline from the same run; the smoke run
    // measures the ones its rows allow (ws/push/200B against the relay) and says "not measured" of the rest.
    expect(results.targets.map((t) => t.name)).toHaveLength(7);
    const idle = results.targets.find((t) => t.name.startsWith("idle WebSocket connection"));
    expect(idle?.measured).toMatch(/KiB\/conn vs relay .* KiB at 50 held/);
    for (const t of results.targets) expect(t.measured.length).toBeGreaterThan(0);
    expect(results.targets.filter((t) => t.measured.startsWith("not measured")).length).toBeGreaterThanOrEqual(5);
    expect(results.machine.nproc).toBeGreaterThan(0);

    const svg = readFileSync(join(out, "latest.svg"), "utf8");
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg.trim().endsWith("</svg>")).toBe(true);
    const md = readFileSync(join(out, "latest.md"), "utf8");
    expect(md).toContain("| variant | load | contender |");
    expect(md).toContain("| contender | asked | held |");
  }, 180_000);
});
