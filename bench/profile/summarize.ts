/**
 * `npx tsx bench/profile/summarize.ts <file.cpuprofile> [top=30] [flame.svg]`: the functions with the
 * most self time (where the CPU actually was), grouped by function and by file, and optionally a
 * flame graph. "(idle)" is the event loop waiting: the share the process was not busy.
 */
import { writeFileSync } from "node:fs";
import { frameName, readProfile, selfTimes, type CpuProfile } from "./cpuprofile.ts";
import { flameSvg } from "./flame.ts";

export interface SelfRow {
  readonly name: string;
  readonly ms: number;
  readonly pct: number;
}

/**
 * Inclusive time per function: a sample counts once for every distinct function on its stack, so
 * a caller's figure covers its callees (how much a path costs in all, not where the CPU was).
 */
function inclusive(profile: CpuProfile, self: Map<number, number>): Map<string, number> {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const out = new Map<string, number>();
  for (const [id, us] of self) {
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const node = nodes.get(at);
      if (!node) break;
      const name = frameName(node);
      if (seen.has(name) || name === "(root)") continue;
      seen.add(name);
      out.set(name, (out.get(name) ?? 0) + us);
    }
  }
  return out;
}

export function summarize(profile: CpuProfile, top: number): { total: number; byFunction: SelfRow[]; byFile: SelfRow[]; byTotal: SelfRow[] } {
  const self = selfTimes(profile);
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  for (const [id, us] of self) {
    const node = nodes.get(id);
    if (!node) continue;
    const name = frameName(node);
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
    const file = name.includes(" ") ? name.slice(name.indexOf(" ") + 1).replace(/:\d+$/, "") : name;
    byFile.set(file, (byFile.get(file) ?? 0) + us);
  }
  const rows = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: us / 1000, pct: (100 * us) / total }));
  return { total, byFunction: rows(byFunction), byFile: rows(byFile), byTotal: rows(inclusive(profile, self)) };
}

export function formatSummary(s: ReturnType<typeof summarize>): string {
  const table = (title: string, rows: SelfRow[]) =>
    [`${title}`, ...rows.map((r) => `${r.pct.toFixed(1).padStart(5)}%  ${r.ms.toFixed(0).padStart(7)} ms  ${r.name}`)].join("\n");
  return (
    `total sampled ${(s.total / 1e6).toFixed(2)} s\n\n${table("self time by function", s.byFunction)}\n\n` +
    `${table("self time by file", s.byFile)}\n\n${table("total (inclusive) time by function", s.byTotal)}\n`
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, top = "30", svg] = process.argv.slice(2);
  if (!file) {
    console.error("usage: tsx bench/profile/summarize.ts <file.cpuprofile> [top] [flame.svg]");
    process.exit(2);
  }
  const profile = readProfile(file);
  console.log(formatSummary(summarize(profile, Number(top))));
  if (svg) {
    writeFileSync(svg, flameSvg(profile, file.split("/").pop() ?? file));
    console.log(`flame graph: ${svg}`);
  }
}
