import { readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { linkProblem, linkTargets, readDoc, ROOT } from "./helpers/markdown.ts";

const readme = readDoc("README.md");

describe("README is a front page", () => {
  it("is under 20 KB", () => {
    expect(Buffer.byteLength(readme)).toBeLessThan(20_000);
  });
  it("has the two commands, the first message and the architecture, and links the protocol", () => {
    for (const heading of ["## Two commands", "## First message", "## Architecture at a glance", "## Performance", "## Documentation"])
      expect(readme).toContain(heading);
    expect(readme).toContain("](docs/protocol.md)");
  });
  it("links nothing outside the repository, and every link resolves", () => {
    const targets = linkTargets(readme);
    expect(targets.length).toBeGreaterThan(5);
    expect(targets.map((t) => linkProblem("README.md", t)).filter(Boolean)).toEqual([]);
  });
  it("links every document in docs/", () => {
    const docs = readdirSync(`${ROOT}/docs`).filter((f) => f.endsWith(".md"));
    expect(docs).toContain("protocol.md");
    for (const doc of docs) expect(readme, doc).toContain(`](docs/${doc})`);
  });
});

describe("the documents link nothing outside the repository", () => {
  const files = [
    ...readdirSync(`${ROOT}/docs`)
      .filter((f) => f.endsWith(".md"))
      .map((f) => `docs/${f}`),
    "bench/results/README.md",
  ];
  for (const file of files) {
    it(file, () => {
      expect(
        linkTargets(readDoc(file))
          .map((t) => linkProblem(file, t))
          .filter(Boolean),
      ).toEqual([]);
    });
  }
});

describe("the link checker itself", () => {
  it("finds links that leave the repository or point nowhere", () => {
    const text =
      "see [c](../shared/CONTRACT.md), [w](https://example.com/x), <http://a.b>, [m](docs/missing.md), [ok](docs/protocol.md#mqtt), `[code](http://x)`";
    expect(linkTargets(text).map((t) => linkProblem("README.md", t))).toEqual([
      "../shared/CONTRACT.md: leaves the repository",
      "https://example.com/x: a link outside the repository",
      "docs/missing.md: no such file",
      undefined,
      "http://a.b: a link outside the repository",
    ]);
  });
});
