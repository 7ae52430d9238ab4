/** A Dockerfile read the way `docker build` reads it: continuation lines joined, comments dropped. */
export interface Instruction {
  readonly op: string;
  /** Everything after the keyword, as written. */
  readonly value: string;
}

export interface Stage {
  readonly from: string;
  readonly name: string | undefined;
  readonly steps: readonly Instruction[];
}

export function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let current = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (current === "" && (line === "" || line.startsWith("#"))) continue;
    if (line.startsWith("#")) continue; // comment lines inside a continuation are dropped too
    if (line.endsWith("\\")) {
      current += `${line.slice(0, -1).trim()} `;
      continue;
    }
    logical.push(current + line);
    current = "";
  }
  const stages: Array<{ from: string; name: string | undefined; steps: Instruction[] }> = [];
  for (const line of logical) {
    const at = line.search(/\s/);
    const op = (at < 0 ? line : line.slice(0, at)).toUpperCase();
    const value = at < 0 ? "" : line.slice(at + 1).trim();
    if (op === "FROM") {
      const [image, as, name] = value.split(/\s+/);
      stages.push({ from: image, name: as?.toUpperCase() === "AS" ? name : undefined, steps: [] });
      continue;
    }
    if (stages.length === 0) throw new Error(`${op} before any FROM`);
    stages[stages.length - 1].steps.push({ op, value });
  }
  return stages;
}

/** The argv of an exec-form (JSON array) CMD/ENTRYPOINT/HEALTHCHECK CMD; undefined for the shell form. */
export function execForm(value: string): string[] | undefined {
  if (!value.startsWith("[")) return undefined;
  const parsed: unknown = JSON.parse(value);
  return Array.isArray(parsed) && parsed.every((p) => typeof p === "string") ? (parsed as string[]) : undefined;
}
