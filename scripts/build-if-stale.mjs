// `npm start`'s prestart: builds dist/ (npm run build) unless it is newer than every TypeScript
// source and tsconfig of the build, so a start with nothing changed does not wait for tsc.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const root = new URL("../", import.meta.url).pathname;
const stamp = join(root, "dist", ".tsbuildinfo");
const skip = new Set(["node_modules", "dist", "test", "bench", "client", ".git", "data"]);

function newest(dir) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (skip.has(entry.name)) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) latest = Math.max(latest, newest(path));
    else if (entry.name.endsWith(".ts") || entry.name.startsWith("tsconfig") || entry.name === "package.json")
      latest = Math.max(latest, statSync(path).mtimeMs);
  }
  return latest;
}

if (!existsSync(stamp) || statSync(stamp).mtimeMs < newest(root)) {
  execFileSync("npm", ["run", "-s", "build"], { cwd: root, stdio: "inherit" });
}
