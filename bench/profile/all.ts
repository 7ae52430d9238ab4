/**
 * `npx tsx bench/profile/all.ts <dir> [top]`: summarises every .cpuprofile in a directory (as
 * written by SERVICE_NODE_ARGS="--cpu-prof --cpu-prof-dir=<dir>" npm run bench) into <name>.txt and
 * a flame graph <name>.svg next to it, and prints the summaries. Profiles of worker threads with
 * nothing but idle time are skipped.
 */
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readProfile } from "./cpuprofile.ts";
import { flameSvg } from "./flame.ts";
import { formatSummary, summarize } from "./summarize.ts";

const [dir, top = "40"] = process.argv.slice(2);
if (!dir) {
  console.error("usage: tsx bench/profile/all.ts <dir> [top]");
  process.exit(2);
}
for (const file of readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"))) {
  const profile = readProfile(join(dir, file));
  const summary = summarize(profile, Number(top));
  const busy = summary.byFunction.filter((r) => r.name !== "(idle)").reduce((n, r) => n + r.pct, 0);
  if (busy < 5) continue;
  const base = join(dir, file.replace(/\.cpuprofile$/, ""));
  const text = formatSummary(summary);
  writeFileSync(`${base}.txt`, text);
  writeFileSync(`${base}.svg`, flameSvg(profile, file));
  console.log(`== ${file}\n${text}`);
}
