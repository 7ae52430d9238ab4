import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

/*
 * No import cycles between top-level folders (README, "Architecture"): the folder graph, built from
 * every source file's relative imports (TypeScript's own pre-processor, so type imports count too),
 * must have no cycle. A new cycle fails here with the files that close it.
 */
const ROOT = resolve(import.meta.dirname, "..");
/** Not part of the service's source tree: tests and benchmarks may import anything. */
const OUTSIDE = new Set(["node_modules", "dist", "test", "bench", ".git"]);

function sources(dir: string, out: string[] = []): string[] {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) {
      if (!(dir === ROOT && (OUTSIDE.has(entry.name) || entry.name.startsWith(".")))) sources(join(dir, entry.name), out);
    } else if (/\.(ts|mts)$/.test(entry.name) && !entry.name.endsWith(".d.ts")) out.push(join(dir, entry.name));
  }
  return out;
}

const folderOf = (file: string): string => {
  const parts = relative(ROOT, file).split(sep);
  return parts.length > 1 ? parts[0] : ".";
};

/** folder -> folder -> one file import that makes the edge (for the message). */
function folderGraph(): Map<string, Map<string, string>> {
  const graph = new Map<string, Map<string, string>>();
  for (const file of sources(ROOT)) {
    const from = folderOf(file);
    for (const imported of ts.preProcessFile(readFileSync(file, "utf8"), true, true).importedFiles) {
      if (!imported.fileName.startsWith(".")) continue;
      const to = folderOf(resolve(dirname(file), imported.fileName));
      if (to === from) continue;
      const edges = graph.get(from) ?? new Map<string, string>();
      graph.set(from, edges);
      if (!edges.has(to)) edges.set(to, `${relative(ROOT, file)} imports ${imported.fileName}`);
    }
  }
  return graph;
}

/** Every elementary cycle's folders, found by a depth-first search from each folder. */
function cycles(graph: Map<string, Map<string, string>>): string[][] {
  const found = new Map<string, string[]>();
  const visit = (start: string, at: string, path: string[]): void => {
    for (const next of graph.get(at)?.keys() ?? []) {
      if (next === start) {
        const key = [...path].sort().join(",");
        if (!found.has(key)) found.set(key, [...path, start]);
      } else if (!path.includes(next) && next > start) visit(start, next, [...path, next]);
    }
  };
  for (const folder of graph.keys()) visit(folder, folder, [folder]);
  return [...found.values()];
}

describe("architecture", () => {
  it("no import cycles between top-level folders", () => {
    const graph = folderGraph();
    const described = cycles(graph).map((cycle) =>
      cycle
        .slice(1)
        .map((to, i) => `${cycle[i]} -> ${to} (${graph.get(cycle[i])?.get(to)})`)
        .join("; "),
    );
    expect(described).toEqual([]);
  });

  it("the check sees a cycle when there is one", () => {
    const graph = new Map([
      ["a", new Map([["b", "a/x.ts imports ../b/y.ts"]])],
      ["b", new Map([["c", "b/y.ts imports ../c/z.ts"]])],
      ["c", new Map([["a", "c/z.ts imports ../a/x.ts"]])],
    ]);
    expect(cycles(graph)).toEqual([["a", "b", "c", "a"]]);
  });
});
