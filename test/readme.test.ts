import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { configTable } from "../bin/config-doc.ts";
import { errorTable } from "../bin/errors-doc.ts";
import { CLOSE } from "../core/close-codes.ts";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");

describe("README stays generated from the code", () => {
  it("has the config table the schema prints", () => {
    expect(readme).toContain(configTable());
  });
  it("has the error table the registry prints", () => {
    expect(readme).toContain(errorTable());
  });
  it("lists every close code", () => {
    for (const [name, code] of Object.entries(CLOSE)) expect(readme).toContain(`| ${code} | ${name} |`);
  });
});
