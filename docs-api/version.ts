import { existsSync, readFileSync } from "node:fs";

let version: string | undefined;

/**
 * The package version, the `info.version` of both API documents. The nearest package.json above
 * this file: `../package.json` from the sources (tsx), `../../package.json` from the build in dist/.
 */
export function serviceVersion(): string {
  if (version !== undefined) return version;
  for (let dir = new URL("../", import.meta.url); ; dir = new URL("../", dir)) {
    const file = new URL("package.json", dir);
    if (existsSync(file)) return (version = (JSON.parse(readFileSync(file, "utf8")) as { version: string }).version);
    if (dir.pathname === "/") throw new Error("package.json not found above docs-api/");
  }
}
