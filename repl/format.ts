/** Plain-text formatting for REPL output: no colours, so tests and logs read the same text. */

export type Cell = string | number | boolean | null | undefined;

/** Left-aligned columns separated by two spaces; numbers right-aligned. */
export function table(headers: readonly string[], rows: ReadonlyArray<readonly Cell[]>): string {
  const text = rows.map((row) => row.map((c) => (c === null || c === undefined ? "-" : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...text.map((r) => (r[i] ?? "").length)));
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === "number"));
  const line = (cells: readonly string[], header: boolean) =>
    cells
      .map((c, i) => (numeric[i] && !header ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join("  ")
      .trimEnd();
  return [
    line(headers, true),
    line(
      widths.map((w) => "-".repeat(w)),
      true,
    ),
    ...text.map((r) => line(r, false)),
  ].join("\n");
}

/** A duration for humans: 850ms, 12.3s, 4m 05s, 2h 03m, 3d 04h. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const pad = (n: number) => String(Math.floor(n)).padStart(2, "0");
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${pad((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d ${pad((s % 86_400) / 3600)}h`;
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** Nodes that failed to answer, one line each ("" when none). */
export function problems(lines: readonly string[]): string {
  return lines.length === 0 ? "" : "\n" + lines.map((l) => `! ${l}`).join("\n");
}
