/**
 * A flame graph of a .cpuprofile as a standalone SVG: total (inclusive) time per call path, root at
 * the bottom, widths proportional to time, frames narrower than a pixel dropped. Hover shows the
 * frame and its share (an SVG <title>).
 */
import { frameName, selfTimes, type CpuProfile } from "./cpuprofile.ts";

const WIDTH = 1400;
const ROW = 16;

interface Box {
  readonly name: string;
  readonly us: number;
  readonly x: number;
  readonly depth: number;
}

function escape(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function color(name: string): string {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  const node = name.includes("node:") || !name.includes(" ");
  const lib = name.includes("~");
  const hue = node ? 200 + (h % 30) : lib ? 30 + (h % 25) : 0 + (h % 20);
  return `hsl(${hue},${65 + (h % 20)}%,${60 + (h % 15)}%)`;
}

export function flameSvg(profile: CpuProfile, title: string): string {
  const self = selfTimes(profile);
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const totals = new Map<number, number>();
  const total = (id: number): number => {
    const known = totals.get(id);
    if (known !== undefined) return known;
    const node = nodes.get(id);
    const t = (self.get(id) ?? 0) + (node?.children ?? []).reduce((sum, c) => sum + total(c), 0);
    totals.set(id, t);
    return t;
  };
  const root = profile.nodes[0];
  // Idle and GC are siblings of the program under the root; drop idle so busy time fills the width.
  const children = (root.children ?? []).filter((c) => nodes.get(c)?.callFrame.functionName !== "(idle)");
  const busy = children.reduce((sum, c) => sum + total(c), 0) || 1;
  const scale = WIDTH / busy;
  const boxes: Box[] = [];
  let maxDepth = 0;
  const walk = (ids: readonly number[], x: number, depth: number) => {
    let at = x;
    for (const id of ids) {
      const us = total(id);
      if (us * scale >= 1) {
        const node = nodes.get(id);
        if (node) {
          boxes.push({ name: frameName(node), us, x: at, depth });
          maxDepth = Math.max(maxDepth, depth);
          walk(node.children ?? [], at, depth + 1);
        }
      }
      at += us * scale;
    }
  };
  walk(children, 0, 0);
  const height = (maxDepth + 2) * ROW + 24;
  const rects = boxes.map((b) => {
    const w = b.us * scale;
    const y = height - (b.depth + 1) * ROW - 4;
    const label = w > 40 ? `<text x="${(b.x + 3).toFixed(1)}" y="${y + 12}">${escape(b.name.slice(0, Math.floor(w / 6.5)))}</text>` : "";
    return `<g><title>${escape(b.name)} — ${(b.us / 1000).toFixed(1)} ms (${((100 * b.us) / busy).toFixed(1)}%)</title><rect x="${b.x.toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="${ROW - 1}" fill="${color(b.name)}"/>${label}</g>`;
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" font-family="monospace" font-size="11">`,
    `<text x="4" y="14" font-size="13">${escape(title)} — busy ${(busy / 1000).toFixed(0)} ms (idle excluded)</text>`,
    ...rects,
    "</svg>",
  ].join("\n");
}
