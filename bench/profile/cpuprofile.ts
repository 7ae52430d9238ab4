/** The parts of V8's .cpuprofile format (written by `node --cpu-prof`) the summaries read. */
import { readFileSync } from "node:fs";

export interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number; readonly columnNumber: number };
  readonly children?: readonly number[];
}

export interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  /** Microseconds between consecutive samples. */
  readonly timeDeltas: readonly number[];
}

export function readProfile(file: string): CpuProfile {
  return JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
}

/** Self time per node id, in microseconds: each sample's delta is charged to the node it hit. */
export function selfTimes(profile: CpuProfile): Map<number, number> {
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i + 1] ?? 0;
    self.set(id, (self.get(id) ?? 0) + dt);
  });
  return self;
}

/** A short, stable name for a frame: function, file (relative to the repo or node_modules) and line. */
export function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const fn = functionName || "(anonymous)";
  if (!url) return fn;
  const file = url
    .replace(/^file:\/\//, "")
    .replace(/^.*\/node_modules\//, "~")
    .replace(/^.*\/work\/[^/]+\//, "");
  return `${fn} ${file}:${lineNumber + 1}`;
}
