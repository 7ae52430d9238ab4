import { readFileSync } from "node:fs";

let version: string | undefined;

/** The package version, the `info.version` of both API documents. */
export function serviceVersion(): string {
  version ??= (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;
  return version;
}
