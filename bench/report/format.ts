/** Number formatting for tables: a median with its range over the rounds. */
import type { Spread } from "../lib/stats.ts";

export function fmt(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return "–";
  return digits === 0 ? Math.round(n).toLocaleString("en-US") : n.toFixed(digits);
}

/** `median (min–max)`, or just the median when there was one round. */
export function fmtSpread(s: Spread, digits = 0): string {
  if (!Number.isFinite(s.median)) return "–";
  if (s.rounds.length <= 1 || s.min === s.max) return fmt(s.median, digits);
  return `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`;
}

/** Latency: two decimals below 10 ms, one below 100, none above. */
export function fmtMs(s: Spread): string {
  const digits = s.median < 10 ? 2 : s.median < 100 ? 1 : 0;
  return fmtSpread(s, digits);
}
