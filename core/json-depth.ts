import { RoutingError } from "./errors.ts";

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;

/**
 * Whether JSON text nests arrays and objects deeper than `max`, found by one pass over the bytes
 * (or UTF-16 units) before any parse, so a body like `[[[[...` never reaches the parser. Brackets
 * inside strings do not count; the text need not be valid JSON (the parser judges that after).
 */
export function nestsDeeperThan(text: Buffer | string, max: number): boolean {
  return typeof text === "string" ? scan(text, max) : scan(text.toString("latin1"), max);
}

// latin1 maps each byte to one code unit; brackets, quotes and backslashes are ASCII, and UTF-8
// continuation bytes are never ASCII, so the byte view and the text view agree.
function scan(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
      continue;
    }
    if (c === QUOTE) inString = true;
    else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > max) return true;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) depth--;
  }
  return false;
}

/**
 * The deepest nesting any JSON the service reads may have: an envelope is 1 level, a frame 2, an
 * ack body 2. Fixed, not a setting: nothing in the contract comes near it.
 */
export const MAX_JSON_DEPTH = 32;

/** Throws INVALID_JSON when `text` nests deeper than MAX_JSON_DEPTH. */
export function assertJsonDepth(text: Buffer | string): void {
  if (nestsDeeperThan(text, MAX_JSON_DEPTH)) throw new RoutingError("INVALID_JSON", `JSON nests deeper than ${MAX_JSON_DEPTH} levels`);
}
